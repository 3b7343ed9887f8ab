package wikimap

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func defaultMap(t *testing.T) *Map {
	t.Helper()
	m, err := Default()
	require.NoError(t, err)
	return m
}

// indexEntry is one wiki of testdata/wiki-index.json, which was derived
// from the same MWCONF snapshot by a different program; comparing against
// it checks our dblist reading independently.
type indexEntry struct {
	Closed           bool     `json:"closed"`
	Echo             bool     `json:"echo"`
	Family           []string `json:"family"`
	Fishbowl         bool     `json:"fishbowl"`
	Flow             bool     `json:"flow"`
	Private          bool     `json:"private"`
	Section          string   `json:"section"`
	Size             string   `json:"size"`
	Special          bool     `json:"special"`
	SUL              bool     `json:"sul_centralauth"`
	Test             bool     `json:"testwiki"`
	TrainGroup       string   `json:"train_group"`
	Version          string   `json:"version"`
	WikidataClientOf *string  `json:"wikidata_client_of"`
}

func TestDefaultMatchesWikiIndex(t *testing.T) {
	m := defaultMap(t)
	b, err := os.ReadFile(filepath.Join("testdata", "wiki-index.json"))
	require.NoError(t, err)
	var index struct {
		Wikis map[string]indexEntry `json:"wikis"`
	}
	require.NoError(t, json.Unmarshal(b, &index))
	require.Len(t, index.Wikis, 1072)
	require.Equal(t, 1072, m.Len())

	for name, want := range index.Wikis {
		id := m.ByNameString(name)
		require.NotZero(t, id, name)
		w := m.Wiki(id)
		require.Equal(t, name, w.DBName)
		require.Equal(t, id, w.ID)
		require.LessOrEqual(t, len(want.Family), 1, name)
		family := ""
		if len(want.Family) == 1 {
			family = want.Family[0]
		}
		repo := ""
		if want.WikidataClientOf != nil {
			repo = *want.WikidataClientOf
		}
		require.Equal(t, Wiki{
			ID: id, DBName: name, Host: w.Host,
			Section: want.Section, Group: want.TrainGroup, Family: family, Size: want.Size,
			Version: want.Version, WikidataRepo: repo,
			Closed: want.Closed, Private: want.Private, Fishbowl: want.Fishbowl, Special: want.Special,
			Test: want.Test, SUL: want.SUL, Echo: want.Echo, Flow: want.Flow,
		}, *w, name)
		require.NotEmpty(t, w.Host, "%s has no host", name)
	}
}

func TestDefaultIDsFollowDBNameOrder(t *testing.T) {
	m := defaultMap(t)
	wikis := m.Wikis()
	require.Len(t, wikis, m.Len())
	for i, w := range wikis {
		require.Equal(t, ID(i+1), w.ID)
		if i > 0 {
			require.Less(t, wikis[i-1].DBName, w.DBName)
		}
	}
	require.Nil(t, m.Wiki(0))
	require.Nil(t, m.Wiki(ID(m.Len()+1)))
	require.NotNil(t, m.Wiki(ID(m.Len())))

	// Wikis returns a copy: callers cannot corrupt the shared map.
	wikis[0].DBName = "changed"
	require.NotEqual(t, "changed", m.Wiki(1).DBName)
}

// Counts from docs/domain.md section 6 (MWCONF 349dc094).
func TestDefaultCounts(t *testing.T) {
	m := defaultMap(t)
	for _, tc := range []struct {
		name string
		got  []ID
		want int
	}{
		{"group0", m.InGroup("group0"), 176},
		{"group1", m.InGroup("group1"), 550},
		{"group2", m.InGroup("group2"), 346},
		{"s1", m.InSection("s1"), 1},
		{"s2", m.InSection("s2"), 17},
		{"s3", m.InSection("s3"), 904},
		{"s4", m.InSection("s4"), 2},
		{"s5", m.InSection("s5"), 131},
		{"s6", m.InSection("s6"), 4},
		{"s7", m.InSection("s7"), 12},
		{"s8", m.InSection("s8"), 1},
		{"list closed", m.List("closed"), 172},
		{"list private", m.List("private"), 44},
		{"list fishbowl", m.List("fishbowl"), 19},
		{"list special", m.List("special"), 78},
		{"list sul", m.List("sul"), 1009},
		{"list open", m.List("open"), 900},
		{"list all", m.List("all"), 1072},
		{"list s3", m.List("s3"), 904},
		{"list deleted", m.List("deleted"), 0}, // deleted wikis are not in wikiversions.json
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Len(t, tc.got, tc.want)
			require.True(t, slices.IsSorted(tc.got))
		})
	}
}

func TestInSectionAndGroupAgreeWithWikis(t *testing.T) {
	m := defaultMap(t)
	sections := map[string][]ID{}
	groups := map[string][]ID{}
	for _, w := range m.Wikis() {
		sections[w.Section] = append(sections[w.Section], w.ID)
		groups[w.Group] = append(groups[w.Group], w.ID)
	}
	require.Len(t, sections, 8)
	require.Len(t, groups, 3)
	for s, ids := range sections {
		require.Equal(t, ids, m.InSection(s), s)
	}
	for g, ids := range groups {
		require.Equal(t, ids, m.InGroup(g), g)
	}
	require.Nil(t, m.InSection("s9"))
	require.Nil(t, m.InGroup("group3"))
}

func TestList(t *testing.T) {
	m := defaultMap(t)
	names := func(ids []ID) []string {
		var out []string
		for _, id := range ids {
			out = append(out, m.Wiki(id).DBName)
		}
		return out
	}
	require.Equal(t, []string{"test2wiki", "testcommonswiki", "testwiki", "testwikidatawiki"}, names(m.List("wikidataclient-test")))
	require.Equal(t, []string{"testcommonswiki", "testwiki", "testwikidatawiki"}, names(m.List("testwikis")))
	require.Equal(t, []string{"enwiki"}, names(m.List("s1")))
	require.Nil(t, m.List("nosuchlist"))
	require.Nil(t, m.List("echo.dbexpr"))
	empty := m.List("preinstall") // exists upstream, no members at this commit
	require.NotNil(t, empty)
	require.Empty(t, empty)

	// The result is a copy.
	sul := m.List("sul")
	sul[0] = 0
	require.NotZero(t, m.List("sul")[0])
}

func TestByHostExamples(t *testing.T) {
	m := defaultMap(t)
	for _, tc := range []struct {
		host, dbname string
	}{
		{"en.wikipedia.org", "enwiki"},
		{"fr.wiktionary.org", "frwiktionary"},
		{"zh-yue.wikipedia.org", "zh_yuewiki"},
		{"zh-min-nan.wikipedia.org", "zh_min_nanwiki"},
		{"be-tarask.wikipedia.org", "be_x_oldwiki"},
		{"no.wikipedia.org", "nowiki"},
		{"simple.wikipedia.org", "simplewiki"},
		{"test.wikipedia.org", "testwiki"},
		{"test2.wikipedia.org", "test2wiki"},
		{"test.wikidata.org", "testwikidatawiki"},
		{"test-commons.wikimedia.org", "testcommonswiki"},
		{"www.wikidata.org", "wikidatawiki"},
		{"commons.wikimedia.org", "commonswiki"},
		{"meta.wikimedia.org", "metawiki"},
		{"www.mediawiki.org", "mediawikiwiki"},
		{"foundation.wikimedia.org", "foundationwiki"},
		{"wikimania.wikimedia.org", "wikimaniawiki"},
		{"wikitech.wikimedia.org", "labswiki"},
		{"wikisource.org", "sourceswiki"},
		{"species.wikimedia.org", "specieswiki"},
		{"incubator.wikimedia.org", "incubatorwiki"},
		{"outreach.wikimedia.org", "outreachwiki"},
		{"login.wikimedia.org", "loginwiki"},
		{"vote.wikimedia.org", "votewiki"},
		{"office.wikimedia.org", "officewiki"},
		{"www.wikifunctions.org", "wikifunctionswiki"},
		{"abstract.wikipedia.org", "abstractwiki"},
		{"affcom.wikimedia.org", "chapcomwiki"},
		{"ombuds.wikimedia.org", "ombudsmenwiki"},
		{"vrt-wiki.wikimedia.org", "otrs_wikiwiki"},
		{"wikipedia-it-arbcom.wikimedia.org", "arbcom_itwiki"},
		{"ee.wikimedia.org", "etwikimedia"},
		{"pa-us.wikimedia.org", "pa_uswikimedia"},
		{"noboard-chapters.wikimedia.org", "noboard_chapterswikimedia"},
		{"nl.wikimedia.org", "nlwikimedia"},
		{"beta.wikiversity.org", "betawikiversity"},
		// Mobile hosts.
		{"en.m.wikipedia.org", "enwiki"},
		{"m.wikidata.org", "wikidatawiki"},
		{"commons.m.wikimedia.org", "commonswiki"},
		{"test.m.wikipedia.org", "testwiki"},
		{"zh-yue.m.wikipedia.org", "zh_yuewiki"},
		{"m.mediawiki.org", "mediawikiwiki"},
		{"m.wikisource.org", "sourceswiki"},
		// Normalisation.
		{"EN.Wikipedia.ORG", "enwiki"},
		{"en.wikipedia.org:443", "enwiki"},
		{"en.wikipedia.org.", "enwiki"},
		{"En.M.Wikipedia.Org.:8080", "enwiki"},
		{"www.wikidata.org:", "wikidatawiki"},
		// Unknown.
		{"", ""},
		{".", ""},
		{":443", ""},
		{"wikipedia.org", ""},
		{"www.wikipedia.org", ""},
		{"et.wikimedia.org", ""}, // etwikimedia lives at ee.wikimedia.org
		{"xx.wikipedia.org", ""},
		{"en.wikipedia.org.example.com", ""},
		{"en.wikipedia.org..", ""},
		{strings.Repeat("a", 300) + ".wikipedia.org", ""},
		{strings.Repeat("A", 300), ""},
	} {
		t.Run("host="+tc.host, func(t *testing.T) {
			want := ID(0)
			if tc.dbname != "" {
				want = m.ByNameString(tc.dbname)
				require.NotZero(t, want, "unknown dbname %s", tc.dbname)
			}
			require.Equal(t, want, m.ByHost([]byte(tc.host)))
		})
	}
}

func TestHostRoundTripEveryOpenWiki(t *testing.T) {
	m := defaultMap(t)
	seen := map[string]string{}
	open := 0
	for _, w := range m.Wikis() {
		require.NotEmpty(t, w.Host, w.DBName)
		prev, dup := seen[w.Host]
		require.False(t, dup, "%s and %s share host %s", prev, w.DBName, w.Host)
		seen[w.Host] = w.DBName
		if w.Closed {
			continue
		}
		open++
		require.Equal(t, w.ID, m.ByName([]byte(w.DBName)), w.DBName)
		require.Equal(t, w.ID, m.ByNameString(w.DBName), w.DBName)
		require.Equal(t, w.ID, m.ByHost([]byte(w.Host)), w.Host)
		require.Equal(t, w.Host, m.Wiki(m.ByHost([]byte(w.Host))).Host)
		require.Equal(t, w.ID, m.ByHost([]byte(strings.ToUpper(w.Host)+":443")), w.Host)
		require.Equal(t, w.ID, m.ByHost([]byte(w.Host+".")), w.Host)
		require.Equal(t, w.ID, m.ByHost([]byte(mobileHost(w.Host))), mobileHost(w.Host))
	}
	require.Equal(t, 900, open)
}

func TestMobileHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"en.wikipedia.org", "en.m.wikipedia.org"},
		{"www.wikidata.org", "m.wikidata.org"},
		{"commons.wikimedia.org", "commons.m.wikimedia.org"},
		{"wikisource.org", "m.wikisource.org"},
		{"localhost", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			require.Equal(t, tc.want, mobileHost(tc.in))
		})
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	m := defaultMap(t)
	for _, in := range []string{"en.wikipedia.org", "EN.M.WIKIPEDIA.ORG:443", "www.wikidata.org.", "unknown.example", ""} {
		b := []byte(in)
		require.Zero(t, testing.AllocsPerRun(100, func() { m.ByHost(b) }), "ByHost(%q)", in)
	}
	for _, in := range []string{"enwiki", "nosuchwiki"} {
		b := []byte(in)
		require.Zero(t, testing.AllocsPerRun(100, func() { m.ByName(b) }), "ByName(%q)", in)
	}
}

// checkout copies the embedded data to a temporary operations/mediawiki-config
// layout so that tests can edit it.
func checkout(t *testing.T) string {
	t.Helper()
	sub, err := fs.Sub(embedded, "data")
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, sub))
	return dir
}

func TestLoadCheckoutEqualsDefault(t *testing.T) {
	m, err := Load(checkout(t))
	require.NoError(t, err)
	d := defaultMap(t)
	require.Equal(t, d.Wikis(), m.Wikis())
	require.Equal(t, d.List("sul"), m.List("sul"))
}

// writeCheckout writes a minimal checkout: every required dblist, empty
// unless given in lists.
func writeCheckout(t *testing.T, versions map[string]string, lists map[string][]string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "dblists"), 0o755))
	b, err := json.Marshal(versions)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wikiversions.json"), b, 0o644))
	for _, name := range requiredLists() {
		if _, ok := lists[name]; !ok {
			lists[name] = nil
		}
	}
	for name, members := range lists {
		body := "# NOTE: generated\n" + strings.Join(members, "\n") + "\n"
		require.NoError(t, os.WriteFile(filepath.Join(dir, "dblists", name+".dblist"), []byte(body), 0o644))
	}
	return dir
}

func TestLoadSmallCheckout(t *testing.T) {
	v := "php-1.48.0-wmf.1"
	dir := writeCheckout(t, map[string]string{
		"enwiki": v, "frwiktionary": v, "metawiki": v, "oldwiki": v, "newspecialwiki": v, "testwikidatawiki": v,
	}, map[string][]string{
		"s1":                  {"enwiki"},
		"s7":                  {"metawiki"},
		"group0":              {"testwikidatawiki", "newspecialwiki"},
		"group1":              {"metawiki", "frwiktionary"},
		"group2":              {"enwiki", "oldwiki"},
		"large":               {"enwiki"},
		"wikipedia":           {"enwiki", "oldwiki"},
		"wiktionary":          {"frwiktionary"},
		"wikidata":            {"testwikidatawiki"},
		"closed":              {"oldwiki"},
		"special":             {"metawiki", "newspecialwiki", "testwikidatawiki"},
		"testwikis":           {"testwikidatawiki"},
		"sul":                 {"enwiki", "frwiktionary", "metawiki"},
		"echo":                {"enwiki"},
		"flow":                {"metawiki"},
		"wikidataclient":      {"enwiki", "metawiki", "deletedwiki"},
		"wikidataclient-test": {"testwikidatawiki"},
		"extra":               {"frwiktionary", "enwiki", "enwiki"},
	})
	m, err := Load(dir)
	require.NoError(t, err)
	require.Equal(t, 6, m.Len())

	want := []Wiki{
		{DBName: "enwiki", Host: "en.wikipedia.org", Section: "s1", Group: "group2", Family: "wikipedia", Size: "large", Version: v, WikidataRepo: "wikidatawiki", SUL: true, Echo: true},
		{DBName: "frwiktionary", Host: "fr.wiktionary.org", Section: "s3", Group: "group1", Family: "wiktionary", Version: v, SUL: true},
		{DBName: "metawiki", Host: "meta.wikimedia.org", Section: "s7", Group: "group1", Version: v, WikidataRepo: "wikidatawiki", Special: true, SUL: true, Flow: true},
		// A special wiki newer than the host table: known by name only.
		{DBName: "newspecialwiki", Section: "s3", Group: "group0", Version: v, Special: true},
		{DBName: "oldwiki", Host: "old.wikipedia.org", Section: "s3", Group: "group2", Family: "wikipedia", Version: v, Closed: true},
		{DBName: "testwikidatawiki", Host: "test.wikidata.org", Section: "s3", Group: "group0", Family: "wikidata", Version: v, WikidataRepo: "testwikidatawiki", Special: true, Test: true},
	}
	for i := range want {
		want[i].ID = ID(i + 1)
	}
	require.Equal(t, want, m.Wikis())

	require.Equal(t, ID(2), m.ByHost([]byte("fr.m.wiktionary.org")))
	require.Equal(t, ID(6), m.ByHost([]byte("test.m.wikidata.org")))
	require.Equal(t, ID(4), m.ByNameString("newspecialwiki"))
	require.Equal(t, []ID{1, 2}, m.List("extra")) // sorted, deduplicated
	require.Equal(t, []ID{1, 3}, m.List("wikidataclient"))
	require.Equal(t, []ID{2, 4, 5, 6}, m.InSection("s3"))
	require.Equal(t, []ID{4, 6}, m.InGroup("group0"))
}

func TestLoadMissingFile(t *testing.T) {
	for _, missing := range []string{
		"wikiversions.json",
		"dblists",
		"dblists/closed.dblist",
		"dblists/s3.dblist",
		"dblists/group2.dblist",
		"dblists/wikidataclient-test.dblist",
		"dblists/wikidata.dblist",
	} {
		t.Run(missing, func(t *testing.T) {
			dir := checkout(t)
			require.NoError(t, os.RemoveAll(filepath.Join(dir, filepath.FromSlash(missing))))
			_, err := Load(dir)
			require.ErrorContains(t, err, missing)
			require.ErrorContains(t, err, dir)
		})
	}
	_, err := Load(filepath.Join(t.TempDir(), "nonexistent"))
	require.ErrorContains(t, err, "wikiversions.json")
}

func TestLoadInvalid(t *testing.T) {
	v := "php-1.48.0-wmf.1"
	for _, tc := range []struct {
		name     string
		versions map[string]string
		lists    map[string][]string
		raw      map[string]string // files written verbatim over the generated ones
		wantErr  string
	}{
		{
			name:     "two sections",
			versions: map[string]string{"enwiki": v},
			lists:    map[string][]string{"s1": {"enwiki"}, "s2": {"enwiki"}},
			wantErr:  "enwiki is in both s1.dblist and s2.dblist",
		},
		{
			name:     "two groups",
			versions: map[string]string{"enwiki": v},
			lists:    map[string][]string{"group0": {"enwiki"}, "group2": {"enwiki"}},
			wantErr:  "one train group",
		},
		{
			name:     "two families",
			versions: map[string]string{"enwiki": v},
			lists:    map[string][]string{"wikipedia": {"enwiki"}, "wikibooks": {"enwiki"}},
			wantErr:  "one family",
		},
		{
			name:     "two wikibase repos",
			versions: map[string]string{"testwiki": v},
			lists:    map[string][]string{"wikidataclient": {"testwiki"}, "wikidataclient-test": {"testwiki"}},
			wantErr:  "one wikibase repo",
		},
		{
			name:     "host collision",
			versions: map[string]string{"commonswiki": v, "commonswikimedia": v},
			lists:    map[string][]string{"wikimedia": {"commonswikimedia"}},
			wantErr:  "wikis commonswiki and commonswikimedia both have host commons.wikimedia.org",
		},
		{
			name:     "version without php- prefix",
			versions: map[string]string{"enwiki": "1.48.0-wmf.1"},
			wantErr:  `enwiki has version "1.48.0-wmf.1"`,
		},
		{
			name:     "bad dbname in wikiversions",
			versions: map[string]string{"en.wiki": v},
			wantErr:  `invalid dbname "en.wiki"`,
		},
		{
			name:     "bad dbname in dblist",
			versions: map[string]string{"enwiki": v},
			raw:      map[string]string{"dblists/echo.dblist": "enwiki\nEN WIKI\n"},
			wantErr:  `parse dblists/echo.dblist: line 2: invalid dbname "EN WIKI"`,
		},
		{
			name:     "broken json",
			versions: map[string]string{"enwiki": v},
			raw:      map[string]string{"wikiversions.json": `{"enwiki": `},
			wantErr:  "parse wikiversions.json",
		},
		{
			name:     "no wikis",
			versions: map[string]string{},
			wantErr:  "wikiversions.json lists no wikis",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lists := tc.lists
			if lists == nil {
				lists = map[string][]string{}
			}
			dir := writeCheckout(t, tc.versions, lists)
			for name, body := range tc.raw {
				require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), []byte(body), 0o644))
			}
			_, err := Load(dir)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestParseDBListComments(t *testing.T) {
	got, err := parseDBList([]byte("# header\n\naawiki\n  abwiki  # trailing comment\r\n\n"))
	require.NoError(t, err)
	require.Equal(t, []string{"aawiki", "abwiki"}, got)
}
