package simulate

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

func TestAppendEscaped(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "abc /wiki/Main_Page", "abc /wiki/Main_Page"},
		{"quote and backslash", `Wikimedia\Rdbms\DBQueryError: "x"`, `Wikimedia\Rdbms\DBQueryError: "x"`},
		{"newline tab cr", "a\nb\tc\rd", "a\nb\tc\rd"},
		{"control", "a\x01b\x1f", "a\x01b\x1f"},
		{"utf-8", "München 東京", "München 東京"},
		{"invalid utf-8", "a\xffb", "a\ufffdb"},
		{"truncated rune", "a\xe6\x9d", "a\ufffd\ufffd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(`"`), appendEscaped(nil, tc.in)...)
			b = append(b, '"')
			require.True(t, json.Valid(b), "%s", b)
			var got string
			require.NoError(t, json.Unmarshal(b, &got))
			require.Equal(t, tc.want, got)
			require.Equal(t, string(appendEscaped(nil, tc.in)), string(appendEscaped(nil, []byte(tc.in))), "string and []byte agree")
		})
	}
}

func TestAppendUUID(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	for range 1000 {
		u := string(appendUUID(nil, rng.Uint64(), rng.Uint64()))
		require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, u)
		require.False(t, seen[u])
		seen[u] = true
	}
}

func TestTimeFormatting(t *testing.T) {
	var c timeCache
	for _, ts := range []time.Time{
		time.Date(2026, 11, 24, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 24, 12, 3, 4, 5_006_007, time.UTC),
		time.Date(2027, 1, 1, 7, 8, 9, 123_456_789, time.UTC),
	} {
		ns := ts.UnixNano()
		require.Equal(t, ts.Format("2006-01-02T15:04:05"), string(c.appendSecond(nil, ns)))
		require.Equal(t, ts.Format("2006-01-02T15:04:05.000000"), string(appendFraction(c.appendSecond(nil, ns), ns, 6)))
		require.Equal(t, ts.Format("2006-01-02T15:04:05.000"), string(appendFraction(c.appendSecond(nil, ns), ns, 3)))
	}
}

func TestAlias(t *testing.T) {
	weights := []float64{1, 2, 3, 0, 4}
	items := []int32{10, 20, 30, 40, 50}
	a := newAlias(items, weights)
	rng := rand.New(rand.NewPCG(3, 4))
	counts := map[int32]int{}
	const n = 200_000
	for range n {
		counts[a.draw(rng)]++
	}
	require.Zero(t, counts[40], "weight 0 is never drawn")
	for i, w := range weights {
		require.InDelta(t, w/10, float64(counts[items[i]])/n, 0.005, "item %d", items[i])
	}
	require.Nil(t, newAlias([]int32{1}, []float64{0}))
}

func TestDailyFactor(t *testing.T) {
	day := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	require.InDelta(t, 1.4, dailyFactor(day.Add(15*time.Hour)), 1e-9, "peak at 15:00 UTC")
	require.InDelta(t, 0.6, dailyFactor(day.Add(4*time.Hour)), 1e-9, "trough at 04:00 UTC")
	require.InDelta(t, 1, meanDailyFactor(day, day.Add(24*time.Hour)), 0.001, "mean 1 over a day")
	for h := range 24 {
		f := dailyFactor(day.Add(time.Duration(h) * time.Hour))
		require.GreaterOrEqual(t, f, 0.6-1e-9)
		require.LessOrEqual(t, f, 1.4+1e-9)
	}
	// Continuous at the joins.
	require.InDelta(t, dailyFactor(day.Add(15*time.Hour-time.Second)), dailyFactor(day.Add(15*time.Hour+time.Second)), 1e-6)
	require.InDelta(t, dailyFactor(day.Add(4*time.Hour-time.Second)), dailyFactor(day.Add(4*time.Hour+time.Second)), 1e-6)
}

func TestVersions(t *testing.T) {
	for _, tc := range []struct{ in, bump, pretrain string }{
		{"1.47.0-wmf.16", "1.47.0-wmf.17", "1.47.0-alpha"},
		{"1.47.0-wmf.9", "1.47.0-wmf.10", "1.47.0-alpha"},
		{"1.48.0-wmf.1", "1.48.0-wmf.2", "1.48.0-alpha"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			require.Equal(t, tc.bump, bumpVersion(tc.in))
			require.Equal(t, tc.pretrain, pretrainVersion(tc.in))
			require.True(t, versionLess(tc.in, tc.bump))
			require.False(t, versionLess(tc.bump, tc.in))
			require.False(t, versionLess(tc.in, tc.in))
		})
	}
	require.True(t, versionLess("", "1.47.0-wmf.1"))
	require.True(t, versionLess("1.47.0-wmf.9", "1.47.0-wmf.16"), "numeric, not lexical")
}

func TestTrafficModel(t *testing.T) {
	m := testMap(t)
	tw := m.ByNameString("testwiki")
	model := newTrafficModel(m, tw)
	var sum float64
	for _, w := range model.weight {
		sum += w
	}
	require.InDelta(t, 1, sum, 1e-9)
	require.Zero(t, model.weight[tw], "testwiki has its own rate")
	share := func(name string) float64 { return model.weight[m.ByNameString(name)] }
	require.InDelta(t, 0.22, share("enwiki"), 0.05, "enwiki about a fifth of the fleet")
	for _, w := range m.Wikis() {
		if w.ID != m.ByNameString("enwiki") {
			require.Less(t, model.weight[w.ID], share("enwiki"), w.DBName)
		}
	}
	require.Less(t, share("aawiki"), 1e-6, "closed wikis near zero")
	s3 := make([]bool, m.Len()+1)
	for _, id := range m.InSection("s3") {
		s3[id] = true
	}
	require.InDelta(t, 0.18, model.share(s3), 0.06, "s3's ~900 wikis")
	var large, medium, small float64
	for _, w := range m.Wikis() {
		switch w.Size {
		case "large":
			large += model.weight[w.ID]
		case "medium":
			medium += model.weight[w.ID]
		default:
			small += model.weight[w.ID]
		}
	}
	require.Greater(t, large, medium)
	require.Greater(t, medium, small)
	require.Greater(t, large, 0.75)
}

func TestTruncateNormalized(t *testing.T) {
	require.Equal(t, "abc", truncateNormalized("abc"))
	long := strings.Repeat("x", 254) + "é" // é straddles byte 255
	got := truncateNormalized(long)
	require.Len(t, got, 254)
	require.Len(t, truncateNormalized(strings.Repeat("y", 300)), 255)
}

func TestPendingHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var h pendingHeap
	var want []pendingRec
	for i := range 500 {
		r := pendingRec{t: rng.Int64N(50), seq: uint64(i)}
		h.push(r)
		want = append(want, r)
	}
	slices.SortStableFunc(want, func(a, b pendingRec) int {
		if a.t != b.t {
			return int(a.t - b.t)
		}
		return int(a.seq) - int(b.seq)
	})
	for _, w := range want {
		got := h.pop()
		require.Equal(t, w.t, got.t)
		require.Equal(t, w.seq, got.seq)
	}
	require.Empty(t, h)
}

// TestPoissonArrivals: request counts per minute follow the configured
// rate and the daily cycle, with Poisson dispersion.
func TestPoissonArrivals(t *testing.T) {
	const rate = 50.0
	cfg := Config{Scenario: "quiet", Seed: 8, Rate: rate, Duration: 30 * time.Minute}
	perMinute := map[int64]int{}
	_, err := Run(t.Context(), cfg, testMap(t), func(_ context.Context, b []Record) error {
		for _, r := range b {
			if r.Topic == DefaultAccessLog {
				perMinute[r.Time.Unix()/60]++
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.Len(t, perMinute, 30)
	start := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var chi2 float64
	for m, n := range perMinute {
		mean := (rate + DefaultTestwikiRate) * 60 * dailyFactor(time.Unix(m*60+30, 0))
		chi2 += (float64(n) - mean) * (float64(n) - mean) / mean
		require.False(t, time.Unix(m*60, 0).Before(start))
	}
	// Dispersion index ≈ 1 for Poisson counts: chi² over 30 minutes is
	// within [12, 55] with probability > 99.5%.
	require.Greater(t, chi2, 12.0)
	require.Less(t, chi2, 55.0)
	require.False(t, math.IsNaN(chi2))
}

func TestWikiInfo(t *testing.T) {
	m := testMap(t)
	for _, tc := range []struct{ db, vhost, lang string }{
		{"enwiki", "www.wikipedia.org", "en,en;q=0.7"},
		{"frwiktionary", "www.wiktionary.org", "fr,en;q=0.7"},
		{"commonswiki", "www.wikimedia.org", "en-US,en;q=0.9"},
		{"wikidatawiki", "www.wikidata.org", "en-US,en;q=0.9"},
	} {
		t.Run(tc.db, func(t *testing.T) {
			w := newWikiInfo(m.Wiki(m.ByNameString(tc.db)))
			require.Equal(t, tc.vhost, w.vhost)
			require.Equal(t, tc.lang, w.lang)
			require.Equal(t, wikimap.ID(m.ByNameString(tc.db)), w.id)
		})
	}
}

// TestJSONSafeParts: the access-log encoder appends these raw.
func TestJSONSafeParts(t *testing.T) {
	safe := func(s string) bool { return string(appendEscaped(nil, s)) == s }
	parts := append(append(pageTitles(), browserAgents()...), fpmHandler, phpVersion)
	for _, k := range pathKinds() {
		parts = append(parts, k.contentType, k.userAgent, k.method)
	}
	for _, w := range testMap(t).Wikis() {
		wi := newWikiInfo(&w)
		parts = append(parts, wi.host, wi.vhost, wi.lang, wi.dbname, wi.shard)
	}
	for _, d := range newDeployments() {
		parts = append(parts, d.namespace, d.release, d.servergroup, d.vhost)
	}
	for _, p := range parts {
		require.True(t, safe(p), "%q needs escaping", p)
	}
	// Every URL the generator builds.
	p, err := newPlan(Config{Scenario: "quiet"}, testMap(t))
	require.NoError(t, err)
	g := newGenerator(p, func(context.Context, []Record) error { return nil }, realClock{})
	for i := range 2000 {
		r := &request{w: &g.wikis[1+i%len(g.wikis[1:])], kind: &g.kinds[i%len(g.kinds)]}
		g.buildURL(r)
		require.True(t, safe(string(r.path)) && safe(string(r.query)), "%s%s", r.path, r.query)
	}
}

func TestIncidentMatches(t *testing.T) {
	onset := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	inc := Incident{Kind: "shared-data-spillover", Wikis: []string{"frwiktionary", "zhwikisource"}, Onset: onset, End: onset.Add(40 * time.Minute)}
	const resolve = 15 * time.Minute
	for _, tc := range []struct {
		name  string
		kind  string
		wikis []string
		at    time.Time
		want  bool
	}{
		{"same kind, a wiki in common, after the onset", "shared-data-spillover", []string{"enwiki", "zhwikisource"}, onset.Add(30 * time.Second), true},
		{"a minute early is allowed", "shared-data-spillover", []string{"frwiktionary"}, onset.Add(-time.Minute), true},
		{"earlier is not", "shared-data-spillover", []string{"frwiktionary"}, onset.Add(-time.Minute - time.Second), false},
		{"up to the end plus the resolve time", "shared-data-spillover", []string{"frwiktionary"}, onset.Add(55 * time.Minute), true},
		{"not after it", "shared-data-spillover", []string{"frwiktionary"}, onset.Add(55*time.Minute + time.Second), false},
		{"another kind", "wiki-anomaly", []string{"frwiktionary"}, onset.Add(time.Minute), false},
		{"no wiki in common", "shared-data-spillover", []string{"enwiki"}, onset.Add(time.Minute), false},
	} {
		require.Equal(t, tc.want, inc.Matches(tc.kind, tc.wikis, tc.at, resolve), tc.name)
	}
	open := inc
	open.End = time.Time{}
	require.True(t, open.Matches("shared-data-spillover", []string{"frwiktionary"}, onset.Add(24*time.Hour), resolve), "an incident without an end matches late findings")
}
