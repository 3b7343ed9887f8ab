package detect

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// synth is a small, deterministic traffic source written straight into a
// real window, to test the rules without Kafka or the simulator.
type synth struct {
	t        *testing.T
	m        *wikimap.Map
	store    *window.Store
	w        *window.Writer
	rng      *rand.Rand
	versions *event.Interner
	rollouts *event.Interner
	wikis    []wikimap.ID
	rate     map[wikimap.ID]float64 // requests per second
	testwiki wikimap.ID
	rollout  uint32
	trainVer uint32
	groupVer map[string]uint32
	reqs     int
}

func newSynth(t *testing.T) *synth {
	m, err := wikimap.Default()
	require.NoError(t, err)
	s := &synth{t: t, m: m, rng: rand.New(rand.NewPCG(1, 2)), versions: event.NewInterner(), rollouts: event.NewInterner(),
		rate: map[wikimap.ID]float64{}, groupVer: map[string]uint32{}}
	s.store, err = window.New(window.Config{}, m, s.versions, s.rollouts, prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.store.Close()) })
	s.w = s.store.NewWriter()
	s.testwiki = m.ByNameString("testwiki")
	big := map[string]float64{"enwiki": 120, "dewiki": 30, "frwiki": 25, "jawiki": 25, "commonswiki": 20, "wikidatawiki": 30, "metawiki": 3, "zhwiki": 12, "itwiki": 12}
	names := slices.Sorted(maps.Keys(big)) // map order would make the traffic differ run to run
	for _, name := range names {
		id := m.ByNameString(name)
		require.NotZero(t, id, name)
		s.wikis = append(s.wikis, id)
		s.rate[id] = big[name]
	}
	n := 0
	for _, id := range m.InSection("s3") {
		w := m.Wiki(id)
		if w.Closed || w.Private || w.Test || n >= 60 {
			continue
		}
		s.wikis = append(s.wikis, id)
		s.rate[id] = 0.5 + 3*s.rng.Float64()
		n++
	}
	s.rollout = s.rollouts.ID([]byte("main-aaaa"))
	s.trainVer = s.versions.ID([]byte("1.47.0-wmf.16"))
	for _, g := range []string{"group0", "group1", "group2"} {
		s.groupVer[g] = s.trainVer
	}
	return s
}

func poisson(r *rand.Rand, mean float64) int {
	// Knuth for small means, normal approximation for large ones.
	if mean > 50 {
		v := int(mean + r.NormFloat64()*sqrt(mean) + 0.5)
		return max(v, 0)
	}
	l, k, p := exp(-mean), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// errorSpec is an error injected per request with a probability.
type errorSpec struct {
	fp      uint64
	msg     string
	channel string
	shared  event.SharedClass
	perReq  float64
	onWiki  func(wikimap.ID) bool
	pretain bool // on the Pretrain scope (testwiki) too
}

var background = []errorSpec{
	{fp: 0x1001, msg: "Memcached error for key {memcached-key}", channel: "memcached", shared: event.SharedObjectCache, perReq: 2e-4},
	{fp: 0x1002, msg: "PHP Warning: Undefined array key \"title\"", channel: "error", perReq: 3e-4},
	{fp: 0x1003, msg: "Wikimedia\\Rdbms\\DBQueryError: Error 1213: Deadlock found", channel: "DBQuery", shared: event.SharedCoreDB, perReq: 1e-4},
}

// run generates traffic for [from, to) in 1-s steps; extra errors apply.
func (s *synth) run(from, to time.Time, extra ...errorSpec) {
	all := append(append([]errorSpec(nil), background...), extra...)
	for t := from; t.Before(to); t = t.Add(time.Second) {
		ns := t.UnixNano()
		for _, id := range s.wikis {
			s.emit(ns, id, event.ScopeTrain, s.rate[id], all)
		}
		s.emit(ns, s.testwiki, event.ScopePretrain, 2, all)
		s.w.Flush()
	}
	s.store.Sync()
}

func (s *synth) emit(ns int64, id wikimap.ID, sc event.Scope, rate float64, errs []errorSpec) {
	n := poisson(s.rng, rate)
	ver := s.groupVer[s.m.Wiki(id).Group]
	ro := uint32(0)
	if sc == event.ScopePretrain {
		ver, ro = s.versions.ID([]byte("1.47.0-alpha")), s.rollout
	}
	for i := 0; i < n; i++ {
		s.reqs++
		ev := event.Event{Time: ns + int64(i), Kind: event.KindRequest, Wiki: id, Scope: sc, Status: 200, Version: ver, Rollout: ro}
		s.w.Add(&ev, &event.Detail{})
		for _, e := range errs {
			if e.onWiki != nil && !e.onWiki(id) {
				continue
			}
			if sc == event.ScopePretrain && e.onWiki == nil && !e.pretain && e.fp > 0x2000 {
				continue
			}
			if s.rng.Float64() >= e.perReq {
				continue
			}
			req := fmt.Sprintf("req-%d", s.reqs)
			ev := event.Event{Time: ns + int64(i), Kind: event.KindError, Wiki: id, Scope: sc, Version: ver, Rollout: ro, Fingerprint: e.fp, Shared: e.shared}
			d := event.Detail{Message: []byte(e.msg), Exemplar: []byte(e.msg), Channel: []byte(e.channel), ReqID: []byte(req), Version: []byte(s.versions.String(ver))}
			s.w.Add(&ev, &d)
		}
	}
}

func (s *synth) detector(t *testing.T) *Detector {
	d, err := New(testConfig(), s.m, s.store)
	require.NoError(t, err)
	return d
}

var t0 = time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)

// evaluate runs the detector to the store's watermark in steps, as the
// pipeline does, and returns every finding that fired.
func evaluate(d *Detector, s *synth) []Finding {
	var fired []Finding
	for _, f := range d.Evaluate(s.store.Watermark()) {
		if f.State == StateFiring {
			fired = append(fired, f)
		}
	}
	return fired
}

func blames(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Kind == KindPretrainRegression || f.Kind == KindSharedDataSpillover || f.Kind == KindPretrainLeak {
			out = append(out, f)
		}
	}
	return out
}

func TestQuietTrafficWithDeployMakesNoFinding(t *testing.T) {
	s := newSynth(t)
	d := s.detector(t)
	s.run(t0, t0.Add(45*time.Minute))
	var fired []Finding
	fired = append(fired, evaluate(d, s)...)
	s.rollout = s.rollouts.ID([]byte("main-bbbb")) // a Pretrain deploy
	s.run(t0.Add(45*time.Minute), t0.Add(90*time.Minute))
	fired = append(fired, evaluate(d, s)...)
	require.Empty(t, fired, "%v", fired)
	on, _ := d.FleetIncident()
	require.False(t, on, "ordinary noise is no fleet incident")
	deps := s.store.Deploys(nil)
	found := false
	for _, dep := range deps {
		if dep.Scope == event.ScopePretrain && !dep.Initial {
			found = true
		}
	}
	require.True(t, found, "the rollout is a Pretrain deploy: %+v", deps)
}

func TestSpilloverOnS3WikisAfterPretrainDeploy(t *testing.T) {
	s := newSynth(t)
	d := s.detector(t)
	s.run(t0, t0.Add(45*time.Minute))
	require.Empty(t, evaluate(d, s))
	s.rollout = s.rollouts.ID([]byte("main-bbbb"))
	deployAt := t0.Add(45 * time.Minute)
	s.run(deployAt, deployAt.Add(5*time.Minute))
	require.Empty(t, evaluate(d, s))
	onset := deployAt.Add(5 * time.Minute)
	s3 := func(id wikimap.ID) bool { return s.m.Wiki(id).Section == "s3" && id != s.testwiki }
	bug := errorSpec{fp: 0x3001, msg: "Wikimedia\\Rdbms\\DBQueryError: Error 1054: Unknown column 'foo_bar' in 'field list'", channel: "DBQuery",
		shared: event.SharedCoreDB, perReq: 5e-3, onWiki: s3}
	s.run(onset, onset.Add(15*time.Minute), bug)
	fired := evaluate(d, s)
	st, _ := json.MarshalIndent(d.CohortStatus(), "", " ")
	require.Len(t, fired, 1, "%v\n%s", fired, st)
	f := fired[0]
	require.Equal(t, KindSharedDataSpillover, f.Kind)
	require.Equal(t, "critical", f.Severity)
	require.NotNil(t, f.Deploy)
	require.Equal(t, "pretrain", f.Deploy.Scope)
	require.WithinDuration(t, deployAt, f.Deploy.At, 10*time.Second)
	// The code test needs a handful of Pretrain-served errors expected at
	// equal rates (testwiki: 2 requests/s, the bug: 0.5% of requests).
	require.Less(t, f.DetectedAt.Sub(onset), 15*time.Minute, "time to detect")
	for _, w := range f.Wikis {
		require.Equal(t, "s3", s.m.Wiki(s.m.ByNameString(w)).Section, w)
	}
	require.Equal(t, "core-db", f.Evidence.SharedData)
	require.Less(t, f.Evidence.PValue, 1e-3)
	require.Contains(t, f.Summary, "Pretrain deploy")

	// Once the errors stop the finding resolves after the quiet period.
	s.run(onset.Add(15*time.Minute), onset.Add(35*time.Minute))
	var resolved bool
	for _, g := range d.Evaluate(s.store.Watermark()) {
		if g.ID == f.ID && g.State == StateResolved {
			resolved = true
		}
	}
	require.True(t, resolved)
}

func TestFleetWideErrorAfterPretrainDeployBlamesNoOne(t *testing.T) {
	s := newSynth(t)
	d := s.detector(t)
	s.run(t0, t0.Add(45*time.Minute))
	s.rollout = s.rollouts.ID([]byte("main-bbbb"))
	deployAt := t0.Add(45 * time.Minute)
	s.run(deployAt, deployAt.Add(5*time.Minute))
	onset := deployAt.Add(5 * time.Minute)
	// A database incident: connection errors on every wiki and both scopes,
	// proportional to traffic.
	incident := errorSpec{fp: 0x3002, msg: "Wikimedia\\Rdbms\\DBConnectionError: Cannot access the database", channel: "DBConnection",
		shared: event.SharedCoreDB, perReq: 5e-3, pretain: true}
	s.run(onset, onset.Add(15*time.Minute), incident)
	fired := evaluate(d, s)
	require.Empty(t, blames(fired), "a fleet-wide incident must not be blamed on Pretrain: %v", fired)
	on, since := d.FleetIncident()
	require.True(t, on, "the fleet detector sees every section jump")
	require.WithinDuration(t, onset, since, 2*time.Minute)
}

func TestNewErrorOnTestwikiAfterPretrainDeploy(t *testing.T) {
	s := newSynth(t)
	d := s.detector(t)
	s.run(t0, t0.Add(45*time.Minute))
	s.rollout = s.rollouts.ID([]byte("main-bbbb"))
	deployAt := t0.Add(45 * time.Minute)
	s.run(deployAt, deployAt.Add(5*time.Minute))
	onset := deployAt.Add(5 * time.Minute)
	// About one error a minute at testwiki's real traffic (2 req/s).
	bug := errorSpec{fp: 0x3003, msg: "TypeError: Foo::bar(): Argument #1 ($x) must be of type int", channel: "exception",
		perReq: 1.0 / 120, onWiki: func(id wikimap.ID) bool { return id == s.testwiki }, pretain: true}
	s.run(onset, onset.Add(15*time.Minute), bug)
	fired := evaluate(d, s)
	var byFingerprint *Finding
	for i, f := range fired {
		// The cohort's rate test may fire too: same kind, same incident.
		require.Equal(t, KindPretrainRegression, f.Kind, "%v", f)
		require.Equal(t, []string{"testwiki"}, f.Wikis)
		if f.Fingerprint == "0000000000003003" {
			byFingerprint = &fired[i]
		}
	}
	require.NotNil(t, byFingerprint, "%v", fired)
	require.Less(t, byFingerprint.DetectedAt.Sub(onset), 5*time.Minute)
	require.Equal(t, "pretrain", byFingerprint.Deploy.Scope)
}

func TestLeak(t *testing.T) {
	s := newSynth(t)
	d := s.detector(t)
	s.run(t0, t0.Add(40*time.Minute))
	require.Empty(t, evaluate(d, s))
	leakAt := t0.Add(40 * time.Minute)
	other := s.m.ByNameString("test2wiki")
	for i := 0; i < 5; i++ {
		ev := event.Event{Time: leakAt.Add(time.Duration(i) * 20 * time.Second).UnixNano(), Kind: event.KindRequest, Wiki: other, Scope: event.ScopePretrain, Status: 200}
		s.w.Add(&ev, &event.Detail{})
	}
	s.run(leakAt, leakAt.Add(5*time.Minute))
	fired := evaluate(d, s)
	require.Len(t, fired, 1, "%v", fired)
	require.Equal(t, KindPretrainLeak, fired[0].Kind)
	require.Equal(t, []string{"test2wiki"}, fired[0].Wikis)
}

func TestBadConfig(t *testing.T) {
	s := newSynth(t)
	cfg := testConfig()
	cfg.Cohort = []string{"nosuchwiki"}
	_, err := New(cfg, s.m, s.store)
	require.ErrorContains(t, err, "nosuchwiki")
}

func sqrt(x float64) float64 { return math.Sqrt(x) }
func exp(x float64) float64  { return math.Exp(x) }

func TestRateRatioLower(t *testing.T) {
	// A new fingerprint: 20 errors in the cohort, none in a control 100×
	// its size. The point estimate is unbounded; the bound is finite, and
	// is RateRatioCI's lower limit at 90% two-sided (95% one-sided).
	e := Evidence{CohortErrors: 20, CohortRequests: 1000, ControlErrors: 0, ControlRequests: 100000}
	e.RateRatio = ratio(20, 1000, 0, 100000)
	rateRatioLower(&e)
	lo, _ := RateRatioCI(20, 0, 1000, 100000, 0.9)
	require.Equal(t, lo, e.RateRatioLower)
	require.Greater(t, e.RateRatioLower, 100.0, "20 errors against none in 100× the requests")
	require.False(t, math.IsInf(e.RateRatioLower, 0))
	finiteEvidence(&e)
	b, err := json.Marshal(e)
	require.NoError(t, err)
	require.Contains(t, string(b), `"rate_ratio":0,`)
	require.Contains(t, string(b), `"rate_ratio_lower":`)

	// With control errors the bound sits below the point estimate.
	e = Evidence{CohortErrors: 30, CohortRequests: 1000, ControlErrors: 10, ControlRequests: 10000}
	rateRatioLower(&e)
	require.Less(t, e.RateRatioLower, 30.0)
	require.Greater(t, e.RateRatioLower, 1.0)

	// Nothing to bound: no cohort errors, or no exposure.
	for _, e := range []Evidence{
		{CohortErrors: 0, CohortRequests: 1000, ControlRequests: 1000},
		{CohortErrors: 5, CohortRequests: 0, ControlRequests: 1000},
		{CohortErrors: 5, CohortRequests: 1000, ControlRequests: 0},
		{RateRatioLower: 7}, // a stale value is cleared
	} {
		rateRatioLower(&e)
		require.Zero(t, e.RateRatioLower, "%+v", e)
	}
}

func TestKindBlamesPretrain(t *testing.T) {
	var blaming []Kind
	for _, k := range Kinds {
		if k.BlamesPretrain() {
			blaming = append(blaming, k)
		}
	}
	require.Equal(t, []Kind{KindPretrainRegression, KindSharedDataSpillover, KindPretrainLeak}, blaming, "the kinds that blame Pretrain")
}

func TestFiniteEvidence(t *testing.T) {
	e := Evidence{RateRatio: math.Inf(1), EValue: math.NaN(), PValue: 1e-9, Note: "x"}
	finiteEvidence(&e)
	require.Zero(t, e.RateRatio)
	require.Zero(t, e.EValue)
	require.Equal(t, 1e-9, e.PValue)
	require.Contains(t, e.Note, "rate_ratio unbounded")
	require.Contains(t, e.Note, "e_value undefined")
	_, err := json.Marshal(e)
	require.NoError(t, err)
}

// TestCodeTestVerdicts: the code test tells a contained regression, a
// spillover and an infrastructure fault apart, and says so when testwiki's
// traffic is too thin to tell.
func TestCodeTestVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		k, rp int64
		n, rt int64
		want  string
	}{
		{"pretrain-served only: contained regression", 20, 1200, 3, 100000, VerdictPretrainWorse},
		{"train-served only: spillover", 0, 1200, 600, 50000, VerdictPretrainSpared},
		{"both alike: infrastructure", 24, 1200, 2000, 100000, VerdictCodeAgnostic},
		{"too thin to tell", 0, 1200, 20, 100000, VerdictUndetermined},
		{"no Pretrain-served traffic", 0, 0, 20, 100000, VerdictUndetermined},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := codeTest("s3", tc.k, tc.rp, tc.n, tc.rt, 1.5)
			require.Equal(t, tc.want, c.Verdict, "%s", c)
			_, err := json.Marshal(c)
			require.NoError(t, err)
		})
	}
}

// TestFindingReopensWithinResolveAfter: a finding that resolved and fires
// again within detect.resolve_after is the same finding, with its first
// detection time and evidence; later it is a new one.
func TestFindingReopensWithinResolveAfter(t *testing.T) {
	s := newSynth(t)
	d := s.detector(t)
	at := t0.UnixNano()
	fill := func(note string) func(*Finding) {
		return func(f *Finding) { f.Evidence.Note = note; f.Wikis = []string{"testwiki"} }
	}
	d.upsert(KindPretrainRegression, keyCohort, at, nil, fill("first"))
	id := findingID(KindPretrainRegression, keyCohort)
	require.Equal(t, StateFiring, d.findings[id].f.State)
	d.upsert(KindPretrainRegression, keyCohort, at+int64(time.Minute), nil, fill("later"))
	require.Equal(t, "first", d.findings[id].f.Evidence.Note, "a firing finding keeps the evidence it fired on")
	d.resolveQuiet(at + int64(time.Minute) + int64(d.cfg.ResolveAfter))
	require.Equal(t, StateResolved, d.findings[id].f.State)
	d.changed = d.changed[:0]
	back := at + int64(time.Minute) + int64(d.cfg.ResolveAfter) + int64(5*time.Minute)
	d.upsert(KindPretrainRegression, keyCohort, back, nil, fill("again"))
	f := d.findings[id].f
	require.Equal(t, StateFiring, f.State)
	require.Nil(t, f.ResolvedAt)
	require.Equal(t, ts(at), f.DetectedAt, "same incident: first detection kept")
	require.Equal(t, "first", f.Evidence.Note)
	require.Equal(t, []string{id}, d.changed, "the reopening is a state change")
	d.resolveQuiet(back + int64(d.cfg.ResolveAfter))
	late := back + 2*int64(d.cfg.ResolveAfter) + int64(time.Minute)
	d.upsert(KindPretrainRegression, keyCohort, late, nil, fill("new"))
	require.Equal(t, ts(late), d.findings[id].f.DetectedAt, "past resolve_after it is a new occurrence")
}

// TestDebugReleaseIsNoLeak: requests for another wiki served by
// mw-pretrain's debug release make no leak and appear in status; the same
// through the main release is a leak.
func TestDebugReleaseIsNoLeak(t *testing.T) {
	s := newSynth(t)
	d := s.detector(t)
	s.run(t0, t0.Add(35*time.Minute))
	require.Empty(t, evaluate(d, s))
	enwiki := s.m.ByNameString("enwiki")
	for i := range 50 {
		ev := event.Event{Time: t0.Add(35*time.Minute + time.Duration(i)*time.Second).UnixNano(), Kind: event.KindRequest, Wiki: enwiki,
			Scope: event.ScopePretrain, Role: event.RoleDebug, Status: 500, Rollout: s.rollout}
		s.w.Add(&ev, nil)
	}
	s.run(t0.Add(35*time.Minute), t0.Add(40*time.Minute))
	require.Empty(t, evaluate(d, s), "the debug release is developers' choice, not a leak")
	st := d.CohortStatus()
	require.Len(t, st.Debug, 1)
	require.Equal(t, "enwiki", st.Debug[0].Wiki)
	require.Equal(t, int64(50), st.Debug[0].Requests)
	for i := range 5 {
		ev := event.Event{Time: t0.Add(40*time.Minute + time.Duration(i)*time.Second).UnixNano(), Kind: event.KindRequest, Wiki: enwiki,
			Scope: event.ScopePretrain, Role: event.RoleWeb, Status: 200, Rollout: s.rollout}
		s.w.Add(&ev, nil)
	}
	s.run(t0.Add(40*time.Minute), t0.Add(42*time.Minute))
	fired := evaluate(d, s)
	require.Len(t, fired, 1)
	require.Equal(t, KindPretrainLeak, fired[0].Kind)
}
