package detect_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/replay"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// The scenario suite (`go test ./detect -run Scenario -v` prints the table):
// every simulator scenario runs through the real decoders, window and
// detector, and is scored against its ground truth — recall, precision,
// false blames of Pretrain, time to detect — beside the scap-style
// guardrail scored on the same events.

var suite = []string{
	"quiet", "pretrain-regression", "pretrain-regression-slow", "spillover-s3", "spillover-jobrunner",
	"train-regression", "fleet-db-incident", "pretrain-leak", "wiki-anomaly", "demo",
	// Attribution: each rule's confounders and true positives.
	"s3-db-incident", "s3-db-outage", "pretrain-request-loop", "pretrain-regression-loops", "debug-release",
	"spillover-existing", "cache-degradation", "spillover-global", "train-then-pretrain", "pretrain-regression-redeploy",
	"wiki-5xx",
}

// seeds: every scenario runs on each, and every bar holds on each.
var seeds = []int64{1, 2, 3}

var topics = map[string]decode.Format{
	"k8s-mw-eqiad": decode.FormatMediaWikiLog, "k8s-mw-codfw": decode.FormatMediaWikiLog,
	"mediawiki.httpd.accesslog": decode.FormatAccessLog,
}

func simTopics() simulate.Topics {
	return simulate.Topics{ErrorTopics: []string{"k8s-mw-eqiad", "k8s-mw-codfw"}, AccessLog: "mediawiki.httpd.accesslog"}
}

// guardrail is scap's check (mediawiki-tools-scap scap/logstash_checker.py): errors in 20 s of the
// train fleet ≥ 150, or of Pretrain ≥ 20, fail a deploy — and so blame it.
// The thresholds are production's, unscaled. testwiki's traffic is
// simulated at its real level, so the Pretrain threshold compares fairly;
// the train fleet is sampled (Rate requests/s against ~20k/s), so the
// 150-error threshold only sees incidents that are large even at that scale.
// Scaling the threshold down instead makes it fire on Poisson noise all day
// (tried: hundreds of false alarms a scenario), which is not scap either.
type guardrail struct {
	counts         map[int64]*[2]int // 20-s window → errors per scope
	trainThreshold int
}

func newGuardrail() *guardrail {
	return &guardrail{counts: map[int64]*[2]int{}, trainThreshold: 150}
}

func (g *guardrail) tap(ev *event.Event) {
	if ev.Kind != event.KindError {
		return
	}
	k := ev.Time / int64(20*time.Second)
	c := g.counts[k]
	if c == nil {
		c = &[2]int{}
		g.counts[k] = c
	}
	c[ev.Scope]++
}

func (g *guardrail) alarm(k int64) (pretrain, train bool) {
	c := g.counts[k]
	if c == nil {
		return false, false
	}
	return c[event.ScopePretrain] >= 20, c[event.ScopeTrain] >= g.trainThreshold
}

// atDeploy is scap as it runs: the check looks at the first two minutes
// after each deploy (canary and production stages) and fails that deploy.
func (g *guardrail) atDeploy(gt simulate.GroundTruth) (pretrain, train []time.Time) {
	for _, d := range gt.Deploys {
		from := d.At.UnixNano() / int64(20*time.Second)
		for k := from; k < from+6; k++ {
			p, t := g.alarm(k)
			if d.Scope == "pretrain" && (p || t) {
				pretrain = append(pretrain, d.At)
				break
			}
			if d.Scope == "train" && t {
				train = append(train, d.At)
				break
			}
		}
	}
	return pretrain, train
}

// continuous is the same thresholds checked on every 20-s window, as an
// alert would: it detects an incident if it fires during it; it blames
// Pretrain falsely whenever it fires within an hour of a Pretrain deploy
// with no Pretrain-caused incident under way (the thresholds are Pretrain's
// supervision rules).
func (g *guardrail) continuous(gt simulate.GroundTruth, r *result) {
	fired := func(from, to time.Time) bool {
		for k := from.UnixNano() / int64(20*time.Second); k <= to.UnixNano()/int64(20*time.Second); k++ {
			if p, t := g.alarm(k); p || t {
				return true
			}
		}
		return false
	}
	for _, inc := range gt.Incidents {
		if slices.Contains(detect.Kinds, detect.Kind(inc.Kind)) && fired(inc.Onset, inc.End) {
			r.contFound++
		}
	}
	keys := make([]int64, 0, len(g.counts))
	for k := range g.counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if p, t := g.alarm(k); !p && !t {
			continue
		}
		at := time.Unix(0, k*int64(20*time.Second))
		explained := slices.ContainsFunc(gt.Incidents, func(inc simulate.Incident) bool {
			return detect.Kind(inc.Kind).BlamesPretrain() && !at.Before(inc.Onset) && !at.After(inc.End)
		})
		afterPretrain := slices.ContainsFunc(gt.Deploys, func(d simulate.Deploy) bool {
			return d.Scope == "pretrain" && !at.Before(d.At) && at.Sub(d.At) <= time.Hour
		})
		if !explained && afterPretrain {
			r.contFalseBlames++
		}
	}
}

type result struct {
	scenario          string
	seed              int64
	byKind            map[string]*kindScore
	sectionIncidents  int // section-incident ground truths
	sectionShown      int // ... that status showed as a section incident
	debugShown        bool
	pretrainIDs       map[string]bool // distinct pretrain-regression finding ids
	deployNamed       bool            // every pretrain-regression names the deploy of its incident
	incidents, found  int
	findings, correct int
	falseBlames       int
	ttd               []time.Duration
	guardFound        int
	guardFalseBlames  int
	contFound         int
	contFalseBlames   int
	notes             []string
	records           int
	elapsed           time.Duration
}

// kindScore is one finding kind's share of a result.
type kindScore struct {
	incidents, found, findings, correct, falseBlames int
	ttd                                              []time.Duration
}

func (r *result) kind(k string) *kindScore {
	if r.byKind == nil {
		r.byKind = map[string]*kindScore{}
	}
	if r.byKind[k] == nil {
		r.byKind[k] = &kindScore{}
	}
	return r.byKind[k]
}

func runScenario(t *testing.T, wikis *wikimap.Map, name string, rate float64, seed int64) result {
	t.Helper()
	start := time.Now()
	cfg := config.Default()
	off, err := replay.NewOffline(cfg, wikis, topics)
	require.NoError(t, err)
	defer func() { require.NoError(t, off.Close()) }()
	g := newGuardrail()
	off.Tap = g.tap
	plan, err := simulate.Plan(simulate.Config{Scenario: name, Seed: seed, Rate: rate, Topics: simTopics()}, wikis)
	require.NoError(t, err)
	// Status is sampled as the records go by: section incidents and the
	// debug release must show there while they happen.
	shown := map[int]bool{}
	var debugShown bool
	gt, err := simulate.Run(context.Background(), simulate.Config{Scenario: name, Seed: seed, Rate: rate, Topics: simTopics()}, wikis,
		func(_ context.Context, batch []simulate.Record) error {
			for i := range batch {
				if err := off.Add(batch[i].Topic, batch[i].Value, batch[i].Time); err != nil {
					return err
				}
			}
			if len(batch) == 0 {
				return nil
			}
			at := batch[len(batch)-1].Time
			for i, inc := range plan.Incidents {
				if inc.Kind != simulate.KindSectionIncident || shown[i] || at.Before(inc.Onset) || at.After(inc.End.Add(5*time.Minute)) {
					continue
				}
				st := off.Detector().CohortStatus()
				sec := wikis.Wiki(wikis.ByNameString(inc.Wikis[0])).Section
				shown[i] = slices.ContainsFunc(st.SectionIncidents, func(si detect.SectionIncident) bool { return si.Section == sec })
			}
			if !debugShown && len(off.Detector().CohortStatus().Debug) > 0 {
				debugShown = true
			}
			return nil
		})
	require.NoError(t, err)
	fired, changes := off.Finish(gt.End)
	_, err = json.Marshal(changes)
	require.NoError(t, err, "every finding must encode as the JSONL contract")
	_, err = json.Marshal(off.Detector().CohortStatus())
	require.NoError(t, err, "status must encode")
	require.Empty(t, off.Rejected, "the simulator writes only valid records")
	r := score(gt, fired, time.Duration(cfg.Detect.ResolveAfter))
	r.scenario, r.seed, r.records, r.elapsed = name, seed, off.Records, time.Since(start)
	r.debugShown = debugShown
	for i, inc := range gt.Incidents {
		if inc.Kind == simulate.KindSectionIncident {
			r.sectionIncidents++
			if shown[i] {
				r.sectionShown++
			}
		}
	}
	r.pretrainIDs = map[string]bool{}
	r.deployNamed = true
	for _, f := range fired {
		if f.Kind != detect.KindPretrainRegression {
			continue
		}
		r.pretrainIDs[f.ID] = true
		named := slices.ContainsFunc(gt.Incidents, func(inc simulate.Incident) bool {
			// The window dates a deploy by the first request its new pods
			// serve, within seconds of the plan's time; the next deploy is
			// minutes away.
			return inc.Kind == string(f.Kind) && inc.Deploy != nil && f.Deploy != nil && f.Deploy.At.Sub(inc.Deploy.At).Abs() < time.Minute
		})
		r.deployNamed = r.deployNamed && named
	}

	g.continuous(gt, &r)
	gp, gtr := g.atDeploy(gt)
	for _, inc := range gt.Incidents {
		k := detect.Kind(inc.Kind)
		if !slices.Contains(detect.Kinds, k) {
			continue
		}
		blamed := gp
		if k == detect.KindTrainRegression {
			blamed = gtr
		}
		if inc.Deploy != nil && slices.ContainsFunc(blamed, func(at time.Time) bool { return at.Equal(inc.Deploy.At) }) {
			r.guardFound++
		}
	}
	for _, at := range gp {
		if !slices.ContainsFunc(gt.Incidents, func(inc simulate.Incident) bool {
			return detect.Kind(inc.Kind).BlamesPretrain() && inc.Deploy != nil && inc.Deploy.At.Equal(at)
		}) {
			r.guardFalseBlames++
		}
	}
	return r
}

// score matches findings to incidents: same kind, a wiki in common, fired
// between one minute before the onset and the end of the incident plus the
// resolve time. A finding that fires again (it resolved and came back) is
// the same finding: it counts once, by id.
func score(gt simulate.GroundTruth, fired []detect.Finding, resolveAfter time.Duration) result {
	var r result
	matches := func(f detect.Finding, inc simulate.Incident) bool {
		return inc.Matches(string(f.Kind), f.Wikis, f.DetectedAt, resolveAfter)
	}
	for _, inc := range gt.Incidents {
		if !slices.Contains(detect.Kinds, detect.Kind(inc.Kind)) {
			continue
		}
		r.incidents++
		ks := r.kind(inc.Kind)
		ks.incidents++
		first := time.Time{}
		for _, f := range fired {
			if matches(f, inc) && (first.IsZero() || f.DetectedAt.Before(first)) {
				first = f.DetectedAt
			}
		}
		if !first.IsZero() {
			r.found++
			ks.found++
			d := max(first.Sub(inc.Onset), 0)
			r.ttd = append(r.ttd, d)
			ks.ttd = append(ks.ttd, d)
		} else {
			r.notes = append(r.notes, fmt.Sprintf("missed %s from %s", inc.Kind, inc.Onset.Format("15:04")))
		}
	}
	seen := map[string]bool{}
	for _, f := range fired {
		if seen[f.ID] {
			continue
		}
		seen[f.ID] = true
		r.findings++
		ks := r.kind(string(f.Kind))
		ks.findings++
		if slices.ContainsFunc(gt.Incidents, func(inc simulate.Incident) bool { return matches(f, inc) }) {
			r.correct++
			ks.correct++
			continue
		}
		if f.Kind.BlamesPretrain() {
			r.falseBlames++
			ks.falseBlames++
		}
		r.notes = append(r.notes, fmt.Sprintf("unexpected %s at %s: %s", f.Kind, f.DetectedAt.Format("15:04"), f.Summary))
	}
	return r
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func TestScenarioSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("the scenario suite simulates hours of traffic")
	}
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	// Scenarios run two at a time (the machines have two cores); the
	// tables keep the suite's order.
	results := make([]result, len(suite)*len(seeds))
	t.Run("scenarios", func(t *testing.T) {
		for i, name := range suite {
			for j, seed := range seeds {
				t.Run(fmt.Sprintf("%s/seed=%d", name, seed), func(t *testing.T) {
					t.Parallel()
					results[i*len(seeds)+j] = runScenario(t, wikis, name, 0, seed)
				})
			}
		}
	})
	var inc, found, findings, correct, blames, gFound, gBlames, cFound, cBlames int
	var ttd []time.Duration
	perSeed := map[int64]*result{}
	perKind := map[string]*kindScore{}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\t\t\tdetector\t\t\t\t\tscap at deploy\t\tscap continuous\t\t\t")
	fmt.Fprintln(tw, "scenario\tseed\tincidents\tfound\tfindings\tcorrect\tfalse blames\tTTD\tfound\tfalse blames\tfound\tfalse blames\trecords\ttime")
	results = slices.DeleteFunc(results, func(r result) bool { return r.scenario == "" }) // not run
	for _, r := range results {
		inc, found, findings, correct, blames = inc+r.incidents, found+r.found, findings+r.findings, correct+r.correct, blames+r.falseBlames
		gFound, gBlames = gFound+r.guardFound, gBlames+r.guardFalseBlames
		cFound, cBlames = cFound+r.contFound, cBlames+r.contFalseBlames
		ttd = append(ttd, r.ttd...)
		ps := perSeed[r.seed]
		if ps == nil {
			ps = &result{}
			perSeed[r.seed] = ps
		}
		ps.incidents, ps.found, ps.findings, ps.correct, ps.falseBlames = ps.incidents+r.incidents, ps.found+r.found, ps.findings+r.findings, ps.correct+r.correct, ps.falseBlames+r.falseBlames
		ps.ttd = append(ps.ttd, r.ttd...)
		for k, ks := range r.byKind {
			pk := perKind[k]
			if pk == nil {
				pk = &kindScore{}
				perKind[k] = pk
			}
			pk.incidents, pk.found, pk.findings, pk.correct, pk.falseBlames = pk.incidents+ks.incidents, pk.found+ks.found, pk.findings+ks.findings, pk.correct+ks.correct, pk.falseBlames+ks.falseBlames
			pk.ttd = append(pk.ttd, ks.ttd...)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", r.scenario, r.seed, r.incidents, r.found, r.findings, r.correct, r.falseBlames,
			median(r.ttd).Round(time.Second), r.guardFound, r.guardFalseBlames, r.contFound, r.contFalseBlames, r.records, r.elapsed.Round(100*time.Millisecond))
	}
	recall, precision := ratio(found, inc), ratio(correct, findings)
	fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t\t\n", inc, found, findings, correct, blames, median(ttd).Round(time.Second), gFound, gBlames, cFound, cBlames)
	require.NoError(t, tw.Flush())

	var bs strings.Builder
	tw = tabwriter.NewWriter(&bs, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "seed\tincidents\trecall\tfindings\tprecision\tfalse blames\tmedian TTD")
	for _, seed := range seeds {
		ps := perSeed[seed]
		if ps == nil { // not run (-run picked some scenarios)
			continue
		}
		fmt.Fprintf(tw, "%d\t%d\t%.2f\t%d\t%.2f\t%d\t%s\n", seed, ps.incidents, ratio(ps.found, ps.incidents), ps.findings, ratio(ps.correct, ps.findings), ps.falseBlames, median(ps.ttd).Round(time.Second))
	}
	fmt.Fprintln(tw, "\nkind\tincidents\trecall\tfindings\tprecision\tfalse blames\tmedian TTD")
	for _, k := range detect.Kinds {
		pk := perKind[string(k)]
		if pk == nil {
			pk = &kindScore{}
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%d\t%.2f\t%d\t%s\n", k, pk.incidents, ratio(pk.found, pk.incidents), pk.findings, ratio(pk.correct, pk.findings), pk.falseBlames, median(pk.ttd).Round(time.Second))
	}
	require.NoError(t, tw.Flush())
	t.Logf("\n%s\n%s\ndetector: recall %.2f, precision %.2f, false blames of Pretrain %d, median time to detect %s\nscap guardrail: recall %.2f, false blames of Pretrain %d",
		b.String(), bs.String(), recall, precision, blames, median(ttd).Round(time.Second), ratio(gFound, inc), gBlames)
	t.Logf("scap thresholds checked continuously: recall %.2f, false blames of Pretrain %d", ratio(cFound, inc), cBlames)
	for _, r := range results {
		for _, n := range r.notes {
			t.Logf("%s seed %d: %s", r.scenario, r.seed, n)
		}
	}
	require.GreaterOrEqual(t, recall, 0.95, "recall")
	require.GreaterOrEqual(t, precision, 0.9, "precision")
	for _, seed := range seeds {
		if perSeed[seed] == nil {
			continue
		}
		require.Zero(t, perSeed[seed].falseBlames, "false blames of Pretrain on seed %d", seed)
	}
	require.LessOrEqual(t, median(ttd), 2*time.Minute, "median time to detect")
	for _, r := range results {
		switch r.scenario {
		case "pretrain-regression-slow":
			require.Equal(t, r.incidents, r.found, "a contained regression of ~15 errors over 15 minutes on testwiki (seed %d)", r.seed)
		case "demo", "spillover-s3", "spillover-jobrunner":
			require.Equal(t, r.findings, r.correct, "%s seed %d: the wikis a spillover raises are that spillover, not wiki anomalies of their own", r.scenario, r.seed)
		case "wiki-anomaly", "wiki-5xx":
			require.Equal(t, r.incidents, r.found, "%s seed %d", r.scenario, r.seed)
			require.LessOrEqual(t, median(r.ttd), 10*time.Minute, "%s seed %d: a wiki anomaly within 10 minutes", r.scenario, r.seed)
		case "s3-db-incident", "s3-db-outage":
			require.Equal(t, r.sectionIncidents, r.sectionShown, "%s seed %d: status shows the section incident while it lasts", r.scenario, r.seed)
		case "debug-release":
			require.True(t, r.debugShown, "seed %d: status shows the debug release's traffic", r.seed)
		case "pretrain-regression-redeploy":
			require.Len(t, r.pretrainIDs, 1, "seed %d: one incident, one finding, across the next Pretrain deploy", r.seed)
			require.True(t, r.deployNamed, "seed %d: the finding names the deploy that brought the regression", r.seed)
		}
	}
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

// TestScenarioQuietWeek: a simulated week with deploys and ordinary noise
// makes at most one finding of any kind.
func TestScenarioQuietWeek(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a week")
	}
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	r := runScenario(t, wikis, "quiet-week", 0, 1)
	t.Logf("quiet week: %d findings from %d records in %s", r.findings, r.records, r.elapsed.Round(time.Second))
	for _, n := range r.notes {
		t.Log(n)
	}
	require.LessOrEqual(t, r.findings, 1)
}

// TestScenarioPlaceboWeek is the placebo: a simulated week with a Pretrain
// deploy every 30 minutes, ordinary noise, a database incident on some
// section every day and a train regression on each train day. Nothing in it
// is Pretrain's, so every Pretrain-blaming finding would be a false blame.
// It logs the false alarms of each kind per simulated week (the README's
// figure).
func TestScenarioPlaceboWeek(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a week")
	}
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	r := runScenario(t, wikis, "placebo-week", 0, 1)
	var b strings.Builder
	for _, k := range detect.Kinds {
		ks := r.kind(string(k))
		fmt.Fprintf(&b, "%s: %d findings, %d of them false alarms; ", k, ks.findings, ks.findings-ks.correct)
	}
	t.Logf("placebo week: %d records in %s; incidents %d found %d; per kind: %s", r.records, r.elapsed.Round(time.Second), r.incidents, r.found, b.String())
	for _, n := range r.notes {
		t.Log(n)
	}
	blames := 0
	for _, k := range detect.Kinds {
		if k.BlamesPretrain() {
			blames += r.kind(string(k)).findings
		}
	}
	// At the placebo's sampled rate a small section's incident is a few
	// errors a minute: status shows those it can tell from noise.
	t.Logf("section incidents shown in status: %d of %d", r.sectionShown, r.sectionIncidents)
	require.Zero(t, blames, "Pretrain-blaming findings in a week with nothing of Pretrain's")
}
