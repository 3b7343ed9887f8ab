package decode

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFingerprint(t *testing.T) {
	fp := func(m, c, f string) uint64 { return Fingerprint([]byte(m), []byte(c), []byte(f)) }
	const msg = `Wikimedia\Rdbms\DBQueryError: Error {errno}: {errstr}`
	const cls = `Wikimedia\Rdbms\DBQueryError`
	const file = "/srv/mediawiki/php-1.47.0-wmf.16/includes/libs/rdbms/database/Database.php"
	ref := fp(msg, cls, file)
	same := []struct{ name, m, c, f string }{
		{"with the exception prefix", "[{reqId}] {exception_url}   " + msg, cls, file},
		{"with a line number", msg, cls, file + ":1198"},
		{"another line number", msg, cls, file + ":7"},
		{"another branch", msg, cls, "/srv/mediawiki/php-1.47.0-wmf.17/includes/libs/rdbms/database/Database.php"},
		{"the next branch", msg, cls, "/srv/mediawiki/php-next/includes/libs/rdbms/database/Database.php:3"},
	}
	for _, tc := range same {
		t.Run("same/"+tc.name, func(t *testing.T) {
			require.Equal(t, ref, fp(tc.m, tc.c, tc.f))
		})
	}
	differ := []struct{ name, m, c, f string }{
		{"another message", "Wikimedia\\Rdbms\\DBQueryError: Error {errno}", cls, file},
		{"another class", msg, "Wikimedia\\Rdbms\\DBConnectionError", file},
		{"another file", msg, cls, "/srv/mediawiki/php-1.47.0-wmf.16/includes/libs/rdbms/database/DatabaseMySQL.php"},
		{"no class", msg, "", file},
		{"a prefix not at the start", "x [{reqId}] {exception_url}   " + msg, cls, file},
		{"parts shifted", msg + cls[:3], cls[3:], file},
	}
	for _, tc := range differ {
		t.Run("differs/"+tc.name, func(t *testing.T) {
			require.NotEqual(t, ref, fp(tc.m, tc.c, tc.f))
		})
	}
	require.NotEqual(t, fp("ab", "c", ""), fp("a", "bc", ""))
	require.NotEqual(t, fp("a", "", "b"), fp("a", "b", ""))
	require.NotEqual(t, fp("", "", ""), fp("", "", "x"))
	// The version in a message is ignored too: fatals name the file there.
	require.Equal(t,
		fp("PHP Fatal error: Allowed memory size exhausted in /srv/mediawiki/php-1.47.0-wmf.16/includes/A.php on line 3", "", ""),
		fp("PHP Fatal error: Allowed memory size exhausted in /srv/mediawiki/php-1.48.0-wmf.1/includes/A.php on line 3", "", ""))
	// "php-*" is what a version becomes: text that already says so collides
	// with it, which is harmless.
	require.Equal(t, fp("", "", "/srv/mediawiki/php-*/A.php"), fp("", "", "/srv/mediawiki/php-1.2/A.php"))
	require.NotEqual(t, fp("", "", "/srv/mediawiki/php-1.2/A.php"), fp("", "", "/srv/mediawiki/php-1.2/B.php"))
}

func TestVersionHandling(t *testing.T) {
	cases := []struct{ in, version, stripped string }{
		{"/srv/mediawiki/php-1.38.0-wmf.3/vendor/wikimedia/assert/src/Assert.php:224", "1.38.0-wmf.3", "/srv/mediawiki/php-1.38.0-wmf.3/vendor/wikimedia/assert/src/Assert.php"},
		{"/srv/mediawiki/src/Profiler.php:276", "", "/srv/mediawiki/src/Profiler.php"},
		{"in /srv/mediawiki/php-bad version/x and /srv/mediawiki/php-1.2/y", "1.2", "in /srv/mediawiki/php-bad version/x and /srv/mediawiki/php-1.2/y"},
		{"/srv/mediawiki/php-", "", "/srv/mediawiki/php-"},
		{"https://host:8080/a.js", "", "https://host:8080/a.js"},
		{"file.php:", "", "file.php:"},
		{"", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			require.Equal(t, tc.version, string(versionFromPath([]byte(tc.in))))
			require.Equal(t, tc.stripped, string(stripLine([]byte(tc.in))))
		})
	}
}

func TestFingerprintAllocatesNothing(t *testing.T) {
	m, c, f := []byte("[{reqId}] {exception_url}   X: in /srv/mediawiki/php-1.47.0-wmf.16/a.php"), []byte("X"), []byte("/srv/mediawiki/php-1.47.0-wmf.16/a.php:3")
	require.Zero(t, testing.AllocsPerRun(100, func() { Fingerprint(m, c, f) }))
}
