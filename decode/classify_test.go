package decode

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/wikimedia/pretrain-detector/event"
)

func TestParseSharedClass(t *testing.T) {
	for c := event.SharedNone + 1; c < event.NumSharedClasses; c++ {
		t.Run(c.String(), func(t *testing.T) {
			got, err := event.ParseSharedClass(c.String())
			require.NoError(t, err)
			require.Equal(t, c, got)
		})
	}
	got, err := event.ParseSharedClass("none")
	require.NoError(t, err)
	require.Equal(t, event.SharedNone, got)
	_, err = event.ParseSharedClass("core_db")
	require.ErrorContains(t, err, `"core_db"`)
	_, err = event.ParseSharedClass("")
	require.Error(t, err)
}

func TestNewClassifierErrors(t *testing.T) {
	cases := []struct {
		name    string
		cfg     ClassifierConfig
		errText string
	}{
		{"unknown channel class", ClassifierConfig{Channels: map[string]string{"Foo": "database"}}, `channel "Foo": unknown shared-data class "database"`},
		{"unknown path class", ClassifierConfig{Paths: []PathRule{{Contains: "/x/", Class: "cache"}}}, `unknown shared-data class "cache"`},
		{"empty contains", ClassifierConfig{Paths: []PathRule{{Contains: "", Class: "x1"}}}, "empty contains"},
		{"none for a path", ClassifierConfig{Paths: []PathRule{{Contains: "/x/", Class: "none"}}}, "only for channels"},
		{"empty channel", ClassifierConfig{Channels: map[string]string{"": "x1"}}, "empty channel"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewClassifier(tc.cfg)
			require.ErrorContains(t, err, tc.errText)
		})
	}
	for ch, class := range DefaultClassifierConfig().Channels {
		_, err := event.ParseSharedClass(class)
		require.NoError(t, err, ch)
	}
	require.NotNil(t, DefaultClassifier())
}

const v16 = "/srv/mediawiki/php-1.47.0-wmf.16/"

func TestClassify(t *testing.T) {
	c := DefaultClassifier()
	cases := []struct {
		name, channel, file, trace string
		want                       event.SharedClass
		frame                      string
	}{
		{"channel map", "DBReplication", "", "", event.SharedCoreDB, "DBReplication"},
		{"memcached channel", "memcached", "", "", event.SharedObjectCache, "memcached"},
		{"channel beats paths", "CentralAuth", v16 + "includes/libs/rdbms/database/Database.php", "", event.SharedCentralAuth, "CentralAuth"},
		{"file in libs/rdbms", "exception", v16 + "includes/libs/rdbms/database/Database.php", "", event.SharedCoreDB, v16 + "includes/libs/rdbms/database/Database.php"},
		{"file in Echo", "exception", v16 + "extensions/Echo/includes/Mapper/NotificationMapper.php", "", event.SharedX1, v16 + "extensions/Echo/includes/Mapper/NotificationMapper.php"},
		{"file in ExternalStore", "exception", v16 + "includes/externalstore/ExternalStoreDB.php", "", event.SharedExternalStore, v16 + "includes/externalstore/ExternalStoreDB.php"},
		{"SqlBagOStuff is the parser cache's", "error", v16 + "includes/libs/objectcache/SqlBagOStuff.php", "", event.SharedParserCache, v16 + "includes/libs/objectcache/SqlBagOStuff.php"},
		{"file beats trace", "exception", v16 + "extensions/Wikibase/client/includes/Hooks.php",
			"#0 " + v16 + "includes/libs/rdbms/database/Database.php(1): f()", event.SharedWikibase, v16 + "extensions/Wikibase/client/includes/Hooks.php"},
		{"innermost frame wins", "exception", v16 + "includes/user/User.php",
			"from " + v16 + "includes/user/User.php(2315)\n#0 " + v16 + "includes/user/UserFactory.php(181): User->load()\n#1 " + v16 + "extensions/CentralAuth/includes/User/CentralAuthUser.php(2981): f()\n#2 " + v16 + "includes/libs/rdbms/database/Database.php(10): g()\n#3 {main}",
			event.SharedCentralAuth, "#1 " + v16 + "extensions/CentralAuth/includes/User/CentralAuthUser.php(2981): f()"},
		{"a callee named in the call part does not count", "exception", v16 + "includes/user/User.php",
			"#0 " + v16 + `includes/user/User.php(45): Wikimedia\ObjectCache\WANObjectCache->getWithSetCallback()` + "\n#1 " + v16 + "extensions/OAuth/src/Backend/Consumer.php(7): h()\n#2 {main}",
			event.SharedMetawiki, "#1 " + v16 + "extensions/OAuth/src/Backend/Consumer.php(7): h()"},
		{"[internal function] frames", "exception", v16 + "includes/x.php",
			"#0 [internal function]: MediaWiki\\Parser\\ParserCache->get()\n#1 " + v16 + "includes/filerepo/LocalRepo.php(3): f()\n",
			event.SharedCommons, "#1 " + v16 + "includes/filerepo/LocalRepo.php(3): f()"},
		{"same line: the earlier rule", "exception", "",
			"#0 " + v16 + "extensions/CentralAuth/includes/libs/rdbms/Shim.php(1): f()", event.SharedCoreDB, "#0 " + v16 + "extensions/CentralAuth/includes/libs/rdbms/Shim.php(1): f()"},
		{"job frames count when nothing inner does", "exception", v16 + "includes/page/WikiPage.php",
			"#0 " + v16 + "includes/page/WikiPage.php(10): f()\n#1 " + v16 + "includes/jobqueue/jobs/RefreshLinksJob.php(151): g()\r\n#2 " + v16 + "extensions/EventBus/includes/JobExecutor.php(79): h()",
			event.SharedJobQueue, "#1 " + v16 + "includes/jobqueue/jobs/RefreshLinksJob.php(151): g()"},
		{"nothing shared", "exception", v16 + "includes/pager/ReverseChronologicalPager.php",
			"from " + v16 + "includes/pager/ReverseChronologicalPager.php(148)\n#0 ...", event.SharedNone, ""},
		{"nothing at all", "", "", "", event.SharedNone, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			class, frame := c.Classify([]byte(tc.channel), []byte(tc.file), []byte(tc.trace))
			require.Equal(t, tc.want, class, "got %s", class)
			require.Equal(t, tc.frame, string(frame))
		})
	}
}

func TestClassifierExtend(t *testing.T) {
	base := DefaultClassifierConfig()
	cfg := base.Extend(ClassifierConfig{
		Channels: map[string]string{"Echo": "none", "GrowthExperiments": "x1", "rdbms": "other"},
		Paths:    []PathRule{{Contains: "/extensions/MyExt/", Class: "wikibase"}, {Contains: "/libs/rdbms/", Class: "other"}},
	})
	require.Equal(t, "x1", base.Channels["Echo"], "Extend leaves its receiver alone")
	c, err := NewClassifier(cfg)
	require.NoError(t, err)
	class, _ := c.Classify([]byte("Echo"), nil, nil)
	require.Equal(t, event.SharedNone, class, "none removes a default channel")
	class, _ = c.Classify([]byte("GrowthExperiments"), nil, nil)
	require.Equal(t, event.SharedX1, class)
	class, _ = c.Classify([]byte("rdbms"), nil, nil)
	require.Equal(t, event.SharedOther, class)
	class, _ = c.Classify([]byte("exception"), []byte(v16+"extensions/MyExt/A.php"), nil)
	require.Equal(t, event.SharedWikibase, class)
	class, _ = c.Classify([]byte("exception"), []byte(v16+"includes/libs/rdbms/A.php"), nil)
	require.Equal(t, event.SharedOther, class, "extra rules come first")
	class, _ = c.Classify([]byte("exception"), []byte(v16+"extensions/Echo/A.php"), nil)
	require.Equal(t, event.SharedX1, class, "default rules remain")
}

func TestClassifyAllocatesNothing(t *testing.T) {
	c := DefaultClassifier()
	trace := []byte("from " + v16 + "includes/user/User.php(2315)\n#0 " + v16 + "includes/user/UserFactory.php(181): User->load()\n#1 " + v16 + "extensions/CentralAuth/includes/User/CentralAuthUser.php(2981): f()")
	file, ch := []byte(v16+"includes/user/User.php"), []byte("exception")
	allocs := testing.AllocsPerRun(100, func() { c.Classify(ch, file, trace) })
	require.Zero(t, allocs)
}

// The automaton finds what a search for every rule would find.
func TestMatcherAgreesWithBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	word := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = "ab/cA\xff"[rng.IntN(6)]
		}
		return b
	}
	for range 300 {
		var patterns [][]byte
		for range 1 + rng.IntN(8) {
			patterns = append(patterns, word(1+rng.IntN(4)))
		}
		m := newMatcher(patterns)
		for range 50 {
			text := word(rng.IntN(20))
			want := -1
			for i, p := range patterns {
				if bytes.Contains(text, p) {
					want = i
					break
				}
			}
			require.Equal(t, want, m.first(text), "patterns %q text %q", patterns, text)
		}
	}
	// Every byte value in the patterns: the class table must not wrap.
	var all [][]byte
	for b := range 256 {
		all = append(all, []byte{byte(b), byte(255 - b)})
	}
	m := newMatcher(all)
	require.Equal(t, 3, m.first([]byte{0x7f, 3, 252}))
	require.Equal(t, -1, m.first([]byte{3}))
}

func TestEmptyClassifier(t *testing.T) {
	c, err := NewClassifier(ClassifierConfig{})
	require.NoError(t, err)
	class, frame := c.Classify([]byte("rdbms"), []byte(v16+"includes/libs/rdbms/A.php"), []byte("#0 "+v16+"includes/libs/rdbms/A.php(1): f()"))
	require.Equal(t, event.SharedNone, class)
	require.Nil(t, frame)
}
