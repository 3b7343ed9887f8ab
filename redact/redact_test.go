package redact

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/detect"
)

// sampleFiles are Wikimedia's own MediaWiki log events (operations/puppet's
// logstash tests, as Kafka carries them and as Logstash outputs them),
// which package decode keeps in its testdata.
var sampleFiles = []string{
	"mediawiki-log-events.kafka-input.jsonl",
	"mediawiki-log-events.logstash-legacy.jsonl",
	"mediawiki-log-events.logstash-ecs.jsonl",
}

var anyIPv4 = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)

// TestRealMessages redacts the message, URL and referrer of each sample
// event (the message is what becomes an exemplar) and checks that the
// event's own IP, the query strings and the user name are gone while what
// identifies the error stays.
func TestRealMessages(t *testing.T) {
	checked := 0
	for _, name := range sampleFiles {
		f, err := os.Open(filepath.Join("..", "decode", "testdata", name))
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev map[string]any
			require.NoError(t, json.Unmarshal(sc.Bytes(), &ev))
			for _, field := range []string{"message", "url", "referrer", "exception_url"} {
				s, _ := ev[field].(string)
				if s == "" {
					continue
				}
				checked++
				got := Text(s)
				require.NotRegexp(t, anyIPv4, got, "%s %s", name, field)
				if ip, _ := ev["ip"].(string); ip != "" {
					require.NotContains(t, got, ip)
				}
				if i := strings.IndexByte(s, '?'); i >= 0 {
					q := s[i+1:]
					if j := strings.IndexAny(q, " \t"); j >= 0 {
						q = q[:j]
					}
					require.NotContains(t, got, q, "%s %s: query string", name, field)
					require.Contains(t, got, Query, "%s %s: the query's place is marked", name, field)
					if !strings.Contains(s[:i], "User:") {
						require.Contains(t, got, s[:i]+Query, "%s %s: the path stays", name, field)
					}
				}
				require.NotContains(t, got, "Bennylin", "%s %s: user name", name, field)
				if cls, _ := ev["exception"].(map[string]any); field == "message" && cls != nil {
					require.Contains(t, got, cls["message"], "%s: the error itself stays", name)
				}
			}
		}
		require.NoError(t, sc.Err())
		require.NoError(t, f.Close())
	}
	require.Greater(t, checked, 20)
}

func TestText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// The shapes of the sample events.
		{"[46c86a62-c331-4e29-ac35-a6ab1d19fe47] /w/index.php?contribs=user&limit=50&target=127.0.0.1&title=Special:Contributions&year=2013   PHP Notice: A non well formed numeric value encountered",
			"[46c86a62-c331-4e29-ac35-a6ab1d19fe47] /w/index.php?…   PHP Notice: A non well formed numeric value encountered"},
		{"/wiki/User:Bennylin/Color/RG?TSQZPPYR=XTPN", "/wiki/User:[user]?…"},
		{`Memcached error for key "enwiki:pcache:idhash:41768916-0!canonical" on server "127.0.0.1:11213": A TIMEOUT OCCURRED`,
			`Memcached error for key "enwiki:pcache:idhash:41768916-0!canonical" on server "[ip]:11213": A TIMEOUT OCCURRED`},
		{"client 2620:0:861:102:10:64:16:215 sent", "client [ip] sent"},
		{"from [2001:db8::7]:443", "from [[ip]]:443"},
		{"/wiki/Special:Contributions/203.0.113.9 and /wiki/Special:Contributions/Some_Editor", "/wiki/Special:Contributions/[user] and /wiki/Special:Contributions/[user]"},
		{"/wiki/User_talk%3AJane_Doe/Archive", "/wiki/User_talk%3A[user]"},
		{`CentralAuthUser: user "Jane Doe" not attached`, `CentralAuthUser: user "[user]" not attached`},
		{`User::newFromName( 'Jane' ) failed`, `User::newFromName( '[user]' ) failed`},
		{"mail to jane.doe@example.org bounced", "mail to [email] bounced"},
		// What must stay.
		{"Wikimedia\\Rdbms\\DBQueryError: Error 1054: Unknown column 'x' in Database::query at 04:23:54", "Wikimedia\\Rdbms\\DBQueryError: Error 1054: Unknown column 'x' in Database::query at 04:23:54"},
		{"php-1.47.0-wmf.16 on mw1384, is it? yes", "php-1.47.0-wmf.16 on mw1384, is it? yes"},
		{"Call to a member function getId() on null", "Call to a member function getId() on null"},
		{"", ""},
	} {
		require.Equal(t, tc.want, Text(tc.in), "in: %s", tc.in)
	}
}

func TestFinding(t *testing.T) {
	f := detect.Finding{ID: "f1", Fingerprint: "abc", Summary: "DBQueryError on /w/index.php?title=User:Jane",
		NormalizedMessage: "[{reqId}] {exception_url}   Error", Evidence: detect.Evidence{Exemplar: "[r] /w/api.php?token=s3cr3t&ip=10.1.2.3   Error", Note: "seen from 10.1.2.3"}}
	g := Finding(f)
	require.Equal(t, "f1", g.ID)
	require.Equal(t, "abc", g.Fingerprint)
	require.Equal(t, "DBQueryError on /w/index.php?…", g.Summary)
	require.Equal(t, "[r] /w/api.php?…   Error", g.Evidence.Exemplar)
	require.Equal(t, "seen from [ip]", g.Evidence.Note)
	require.Equal(t, "[r] /w/api.php?token=s3cr3t&ip=10.1.2.3   Error", f.Evidence.Exemplar, "the original is not modified")
}
