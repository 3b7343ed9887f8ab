package simulate

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// injected returns the error events matching an incident's identity.
func injected(c *collected, inc Incident) []errEvent {
	var out []errEvent
	for _, e := range c.errs {
		if e.str("normalized_message") != inc.NormalizedMessage || e.str("channel") != inc.Channel {
			continue
		}
		if inc.ExceptionClass != "" {
			exc, _ := e.f["exception"].(map[string]any)
			if exc == nil || exc["class"] != inc.ExceptionClass {
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

// jobSlack covers errors a jobrunner logs after the request that queued
// the job (up to ~20 s later).
const jobSlack = 30 * time.Second

// requirePoisson checks an observed count against the ground truth's rate.
func requirePoisson(t *testing.T, inc Incident, observed int) {
	t.Helper()
	want := inc.ErrorsPerMinute * inc.End.Sub(inc.Onset).Minutes()
	tol := 4*math.Sqrt(want) + 3
	require.InDelta(t, want, float64(observed), tol, "%s: %d injected errors, ground truth says %.1f/min → %.1f", inc.Kind, observed, inc.ErrorsPerMinute, want)
}

// checkNewFingerprint: the injected error never occurs before its onset,
// only on the incident's wikis, only within [onset, end+jobSlack), and at
// the rate the ground truth states.
func checkNewFingerprint(t *testing.T, c *collected, inc Incident) []errEvent {
	t.Helper()
	evs := injected(c, inc)
	require.NotEmpty(t, evs, "%s: no injected error in the records", inc.Kind)
	for _, e := range evs {
		require.False(t, e.time.Before(inc.Onset), "%s: injected error at %v, before onset %v", inc.Kind, e.time, inc.Onset)
		require.True(t, e.time.Before(inc.End.Add(jobSlack)), "%s: injected error at %v, after end %v", inc.Kind, e.time, inc.End)
		_, found := slices.BinarySearch(inc.Wikis, e.str("wiki"))
		require.True(t, found, "%s: injected error on %s, not an incident wiki", inc.Kind, e.str("wiki"))
	}
	requirePoisson(t, inc, len(evs))
	return evs
}

func TestGroundTruthMatchesRecords(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		rate     float64
		what     collectWhat
		check    func(t *testing.T, c *collected)
	}{
		{"pretrain-regression", 20, withErrors, func(t *testing.T, c *collected) {
			require.Len(t, c.gt.Incidents, 2)
			newInc, rise := c.gt.Incidents[0], c.gt.Incidents[1]
			require.Equal(t, []string{"testwiki"}, newInc.Wikis)
			require.InDelta(t, 10, newInc.ErrorsPerMinute, 0.01)
			require.Equal(t, newInc.Onset, newInc.Deploy.At.Add(2*time.Minute), "onset a fixed delay after the deploy")
			for _, e := range checkNewFingerprint(t, c, newInc) {
				require.Equal(t, "mw-pretrain", e.f["kubernetes"].(map[string]any)["namespace_name"])
				require.Equal(t, "1.47.0-alpha", e.str("mwversion"))
				require.Equal(t, "TypeError", newInc.ExceptionClass)
			}
			// The existing warning: on testwiki via mw-pretrain, rare before
			// the deploy, ~3/min after.
			before, during := 0, 0
			for _, e := range injected(c, rise) {
				if e.str("wiki") != "testwiki" || !strings.HasPrefix(e.str("servergroup"), "kube-mw-pretrain") {
					continue
				}
				switch {
				case e.time.Before(rise.Onset):
					before++
				case e.time.Before(rise.End):
					during++
				}
			}
			require.LessOrEqual(t, before, 3, "background level before the deploy")
			requirePoisson(t, rise, during)
			trainSide := 0
			for _, e := range injected(c, rise) {
				if e.str("wiki") != "testwiki" {
					trainSide++
				}
			}
			require.Positive(t, trainSide, "the warning exists fleet-wide: it is not a new fingerprint")
		}},
		{"pretrain-regression-slow", 20, withErrors, func(t *testing.T, c *collected) {
			inc := c.gt.Incidents[0]
			require.Equal(t, 15*time.Minute, inc.End.Sub(inc.Onset))
			require.InDelta(t, 1, inc.ErrorsPerMinute, 0.01)
			evs := checkNewFingerprint(t, c, inc)
			require.InDelta(t, 15, len(evs), 13, "about 15 errors")
		}},
		{"spillover-s3", 40, withErrors, func(t *testing.T, c *collected) {
			inc := c.gt.Incidents[0]
			require.NotContains(t, inc.Wikis, "testwiki")
			require.Greater(t, len(inc.Wikis), 800, "the s3 wikis")
			require.Equal(t, "DBQuery", inc.Channel)
			require.Equal(t, `Wikimedia\Rdbms\DBQueryError`, inc.ExceptionClass)
			require.True(t, strings.HasPrefix(inc.File, "includes/libs/rdbms/"))
			evs := checkNewFingerprint(t, c, inc)
			perWiki := map[string]int{}
			per20s := map[int64]int{}
			for _, e := range evs {
				require.Equal(t, "s3", e.str("shard"))
				require.False(t, strings.HasPrefix(e.str("servergroup"), "kube-mw-pretrain"), "served by the train")
				require.Equal(t, "1.47.0-wmf.16", e.str("mwversion"))
				perWiki[e.str("wiki")]++
				per20s[e.time.Unix()/20]++
			}
			require.GreaterOrEqual(t, len(perWiki), 5, "spread over many wikis")
			for _, n := range per20s {
				require.Less(t, n, 150, "below scap's guardrail")
			}
		}},
		{"spillover-jobrunner", 20, withErrors, func(t *testing.T, c *collected) {
			inc := c.gt.Incidents[0]
			require.Equal(t, []string{"testwiki"}, inc.Wikis)
			for _, e := range checkNewFingerprint(t, c, inc) {
				require.Equal(t, "kube-mw-jobrunner", e.str("servergroup"))
				require.Equal(t, "mw-jobrunner", e.f["kubernetes"].(map[string]any)["namespace_name"])
				require.Equal(t, "/rpc/RunSingleJob.php", e.str("url"))
				require.Equal(t, "1.47.0-wmf.16", e.str("mwversion"), "the TRAIN version")
				require.Contains(t, e.f["exception"].(map[string]any)["trace"], "includes/jobqueue/JobRunner.php")
			}
		}},
		{"train-regression", 20, withErrors, func(t *testing.T, c *collected) {
			inc := c.gt.Incidents[0]
			require.Equal(t, "train", inc.Deploy.Scope)
			require.Equal(t, "group1", inc.Deploy.Group)
			group1 := testMap(t).InGroup("group1")
			require.Len(t, inc.Wikis, len(group1))
			for _, e := range checkNewFingerprint(t, c, inc) {
				require.Equal(t, inc.Deploy.Version, e.str("mwversion"), "the new branch")
				require.Contains(t, e.f["exception"].(map[string]any)["file"], "/php-"+inc.Deploy.Version+"/")
				require.False(t, strings.HasPrefix(e.str("servergroup"), "kube-mw-pretrain"))
			}
			// Other groups keep the old branch.
			for _, e := range c.errs {
				if e.str("wiki") == "enwiki" {
					require.Equal(t, "1.47.0-wmf.16", e.str("mwversion"), "enwiki is group2")
				}
			}
		}},
		{"fleet-db-incident", 20, withErrors, func(t *testing.T, c *collected) {
			inc := c.gt.Incidents[0]
			require.Equal(t, KindFleetIncident, inc.Kind)
			require.Equal(t, "pretrain", inc.Deploy.Scope)
			require.Contains(t, inc.Wikis, "testwiki")
			require.Contains(t, inc.Wikis, "enwiki")
			pretrain, train := 0, 0
			for _, e := range checkNewFingerprint(t, c, inc) {
				if strings.HasPrefix(e.str("servergroup"), "kube-mw-pretrain") {
					require.Equal(t, "testwiki", e.str("wiki"))
					pretrain++
				} else {
					train++
				}
			}
			require.Positive(t, pretrain, "testwiki is hit too")
			// In proportion to traffic: testwiki's 2/s against the fleet's 20/s.
			require.InDelta(t, 2.0/22, float64(pretrain)/float64(pretrain+train), 0.05)
		}},
		{"pretrain-leak", 30, withErrors | withAccess, func(t *testing.T, c *collected) {
			inc := c.gt.Incidents[0]
			require.Equal(t, []string{"test2wiki", "testcommonswiki", "testwikidatawiki"}, inc.Wikis)
			for _, e := range checkNewFingerprint(t, c, inc) {
				require.True(t, strings.HasPrefix(e.str("servergroup"), "kube-mw-pretrain"))
				require.NotEqual(t, "testwiki", e.str("wiki"))
			}
			leakedBefore, leakedDuring, trainDuring := 0, 0, 0
			for _, a := range c.access {
				if a.domain == "test.wikipedia.org" {
					continue
				}
				if a.deployment == "mw-pretrain" {
					if a.time.Before(inc.Onset) || !a.time.Before(inc.End) {
						leakedBefore++
					} else {
						leakedDuring++
						require.Contains(t, []string{"test2.wikipedia.org", "test.wikidata.org", "test-commons.wikimedia.org"}, a.domain)
					}
				} else if !a.time.Before(inc.Onset) && a.time.Before(inc.End) && strings.HasPrefix(a.domain, "test") && a.domain != "test.wikipedia.org" {
					trainDuring++
				}
			}
			require.Zero(t, leakedBefore, "no leak outside the incident")
			require.Positive(t, leakedDuring)
			require.Zero(t, trainDuring, "the leaked wikis are served by mw-pretrain only")
			// Background errors of leaked requests are kube-mw-pretrain too.
			for _, e := range c.errs {
				if e.str("wiki") != "testwiki" && strings.HasPrefix(e.str("servergroup"), "kube-mw-pretrain") {
					require.False(t, e.time.Before(inc.Onset))
				}
			}
		}},
		{"wiki-anomaly", 40, withErrors, func(t *testing.T, c *collected) {
			inc := c.gt.Incidents[0]
			require.Len(t, inc.Wikis, 1)
			require.Nil(t, inc.Deploy)
			w := testMap(t).Wiki(testMap(t).ByNameString(inc.Wikis[0]))
			require.Equal(t, "medium", w.Size)
			require.Contains(t, []string{"s2", "s5", "s6"}, w.Section)
			for _, d := range c.gt.Deploys {
				require.Greater(t, absDuration(inc.Onset.Sub(d.At)), time.Hour, "no deploy near the onset")
			}
			checkNewFingerprint(t, c, inc)
		}},
		{"demo", 40, withErrors, func(t *testing.T, c *collected) {
			require.Equal(t, 75*time.Minute, c.gt.End.Sub(c.gt.Start))
			require.Len(t, c.gt.Deploys, 1)
			require.Equal(t, c.gt.Start.Add(30*time.Minute), c.gt.Deploys[0].At)
			inc := c.gt.Incidents[0]
			require.Equal(t, c.gt.Start.Add(40*time.Minute), inc.Onset)
			require.Equal(t, c.gt.End, inc.End)
			checkNewFingerprint(t, c, inc)
			// At the demo's own rate the spillover is strong from its first
			// minutes (the test runs at a tenth of it).
			gt, err := Plan(Config{Scenario: "demo"}, testMap(t))
			require.NoError(t, err)
			require.Greater(t, gt.Incidents[0].ErrorsPerMinute, 10.0)
		}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			c := collect(t, Config{Scenario: tc.scenario, Seed: 11, Rate: tc.rate}, tc.what)
			require.NotEmpty(t, c.gt.Incidents)
			tc.check(t, c)
		})
	}
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// TestQuietWeek generates the week at a reduced rate and checks the train
// moved every group to the new branch on its day.
func TestQuietWeek(t *testing.T) {
	if testing.Short() {
		t.Skip("a simulated week")
	}
	c := collect(t, Config{Scenario: "quiet-week", Seed: 1, Rate: 2, TestwikiRate: 0.2}, withErrors)
	require.Empty(t, c.gt.Incidents)
	trains := map[string]time.Time{}
	for _, d := range c.gt.Deploys {
		if d.Scope == "train" {
			trains[d.Group] = d.At
		}
	}
	require.Len(t, trains, 3)
	groupOf := map[string]string{}
	for _, w := range testMap(t).Wikis() {
		groupOf[w.DBName] = w.Group
	}
	checked := 0
	for _, e := range c.errs {
		g := groupOf[e.str("wiki")]
		if e.str("wiki") == "" || strings.HasPrefix(e.str("servergroup"), "kube-mw-pretrain") || g == "" {
			continue
		}
		want := "1.47.0-wmf.16"
		if !e.time.Before(trains[g]) {
			want = "1.47.0-wmf.17"
		}
		require.Equal(t, want, e.str("mwversion"), "%s (%s) at %v", e.str("wiki"), g, e.time)
		checked++
	}
	require.Greater(t, checked, 100)
	// Daily cycle: the 15:00 hour is busier than the 04:00 hour.
	require.Greater(t, float64(c.accessPerHour[15]), 1.8*float64(c.accessPerHour[4]), "peak ~1.4, trough ~0.6")
}
