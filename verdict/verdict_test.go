package verdict

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/detect"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func min_(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

// rates is traffic per minute, constant on each side of a change point.
type rates struct {
	cohortReq, cohortErr, controlReq, controlErr float64
}

// fakeSource is a small event-time window: per-minute rates before and
// after a change point, counted exactly over whole minutes, and a
// watermark and data start. It stands in for the window so that each rule
// can be checked on a timeline of a few deploys.
type fakeSource struct {
	wm, start      time.Time
	change         time.Time
	before, after  rates
	cohortName     string
	countsRequests int // calls to Counts
}

func (s *fakeSource) Watermark() time.Time   { return s.wm }
func (s *fakeSource) DataStart() time.Time   { return s.start }
func (s *fakeSource) Cohort(d Deploy) string { return s.cohortName }
func (s *fakeSource) Counts(d Deploy, from, to time.Time) Counts {
	s.countsRequests++
	c := Counts{From: from, To: to}
	for t := from; t.Before(to); t = t.Add(time.Minute) {
		r := s.before
		if !t.Before(s.change) {
			r = s.after
		}
		c.CohortRequests += int64(r.cohortReq)
		c.CohortErrors += int64(r.cohortErr)
		c.ControlRequests += int64(r.controlReq)
		c.ControlErrors += int64(r.controlErr)
	}
	return c
}

var cfg = Config{Alpha: 1e-3, Margin: 1.5, Attribution: time.Hour, MinPrePeriod: 30 * time.Minute}

// busy is a cohort with enough errors for a bound: 60 requests and 6
// errors a minute against a control of 24000 and 240.
var busy = rates{cohortReq: 600, cohortErr: 30, controlReq: 24000, controlErr: 240}

// quiet is testwiki at its real 2 requests a second, an error every few
// minutes.
var quiet = rates{cohortReq: 120, cohortErr: 0.3, controlReq: 24000, controlErr: 240}

func pretrain(v string, at time.Time) Deploy {
	return Deploy{Scope: "pretrain", Version: v, At: at, Source: "rollout"}
}

func train(group, v string, at time.Time) Deploy {
	return Deploy{Scope: "train", Group: group, Version: v, At: at, Source: "mwversion"}
}

func finding(id string, k detect.Kind, st detect.State, dep *Deploy, onset time.Time) detect.Finding {
	f := detect.Finding{ID: id, Kind: k, Severity: k.Severity(), State: st, StartedAt: onset, DetectedAt: onset.Add(2 * time.Minute)}
	if dep != nil {
		f.Deploy = &detect.Deploy{Scope: dep.Scope, Group: dep.Group, Version: dep.Version, At: dep.At}
	}
	return f
}

func TestJudgeRules(t *testing.T) {
	a := pretrain("mw-pretrain-main-aaaa", min_(60))
	b := pretrain("mw-pretrain-main-bbbb", min_(80)) // supersedes a after 20 minutes
	g0 := train("group0", "1.47.0-wmf.17", min_(70))
	g1 := train("group1", "1.47.0-wmf.17", min_(75))
	for _, tc := range []struct {
		name     string
		timeline []Deploy
		judge    Deploy
		findings []detect.Finding
		src      fakeSource
		want     Verdict
		ids      []string
		reason   string
	}{
		{
			name: "a firing spillover that names the deploy fails it, window still open", timeline: []Deploy{a}, judge: a,
			findings: []detect.Finding{finding("s1", detect.KindSharedDataSpillover, detect.StateFiring, &a, min_(70))},
			src:      fakeSource{wm: min_(75), start: t0, before: busy, after: busy, change: min_(60)},
			want:     Fail, ids: []string{"s1"}, reason: "fired",
		},
		{
			name: "a resolved pretrain-regression fails it too", timeline: []Deploy{a}, judge: a,
			findings: []detect.Finding{finding("r1", detect.KindPretrainRegression, detect.StateResolved, &a, min_(65))},
			src:      fakeSource{wm: min_(200), start: t0, before: busy, after: busy, change: min_(60)},
			want:     Fail, ids: []string{"r1"},
		},
		{
			name: "a pending finding is not a fail", timeline: []Deploy{a}, judge: a,
			findings: []detect.Finding{finding("p1", detect.KindPretrainRegression, detect.StatePending, &a, min_(65))},
			src:      fakeSource{wm: min_(90), start: t0, before: busy, after: busy, change: min_(60)},
			want:     Pending, reason: "open until",
		},
		{
			name: "a pretrain-leak names no deploy: it blames the latest Pretrain deploy before its onset", timeline: []Deploy{a, b}, judge: b,
			findings: []detect.Finding{finding("l1", detect.KindPretrainLeak, detect.StateFiring, nil, min_(85))},
			src:      fakeSource{wm: min_(90), start: t0, before: busy, after: busy, change: min_(60)},
			want:     Fail, ids: []string{"l1"},
		},
		{
			name: "and not the one before", timeline: []Deploy{a, b}, judge: a,
			findings: []detect.Finding{finding("l1", detect.KindPretrainLeak, detect.StateFiring, nil, min_(85))},
			src:      fakeSource{wm: min_(200), start: t0, before: busy, after: busy, change: min_(60)},
			want:     Pass,
		},
		{
			name: "a finding about another Pretrain deploy does not fail this one", timeline: []Deploy{a, b}, judge: a,
			findings: []detect.Finding{finding("s2", detect.KindSharedDataSpillover, detect.StateFiring, &b, min_(85))},
			src:      fakeSource{wm: min_(200), start: t0, before: busy, after: busy, change: min_(60)},
			want:     Pass,
		},
		{
			name: "train-regression does not fail a Pretrain deploy", timeline: []Deploy{a, g0}, judge: a,
			findings: []detect.Finding{finding("t1", detect.KindTrainRegression, detect.StateFiring, &g0, min_(72))},
			src:      fakeSource{wm: min_(200), start: t0, before: busy, after: busy, change: min_(60)},
			want:     Pass,
		},
		{
			name: "train-regression fails the train deploy of its group", timeline: []Deploy{a, g0, g1}, judge: g0,
			findings: []detect.Finding{finding("t1", detect.KindTrainRegression, detect.StateFiring, &g0, min_(72))},
			src:      fakeSource{wm: min_(73), start: t0, before: busy, after: busy, change: min_(60)},
			want:     Fail, ids: []string{"t1"},
		},
		{
			name: "and not the same version's deploy to another group", timeline: []Deploy{a, g0, g1}, judge: g1,
			findings: []detect.Finding{finding("t1", detect.KindTrainRegression, detect.StateFiring, &g0, min_(72))},
			src:      fakeSource{wm: min_(200), start: t0, before: busy, after: busy, change: min_(60)},
			want:     Pass,
		},
		{
			name: "Pretrain-blaming kinds do not fail a train deploy", timeline: []Deploy{g0}, judge: g0,
			findings: []detect.Finding{
				finding("s3", detect.KindSharedDataSpillover, detect.StateFiring, &Deploy{Scope: "train", Group: "group0", Version: g0.Version}, min_(72)),
				finding("w1", detect.KindWikiAnomaly, detect.StateFiring, &g0, min_(72)),
			},
			src:  fakeSource{wm: min_(200), start: t0, before: busy, after: busy, change: min_(60)},
			want: Pass,
		},
		{
			name: "pending while the attribution window is open", timeline: []Deploy{a}, judge: a,
			src:  fakeSource{wm: min_(119), start: t0, before: busy, after: busy, change: min_(60)},
			want: Pending,
		},
		{
			name: "a newer Pretrain deploy closes the window early (judged on its 20 minutes)", timeline: []Deploy{a, b}, judge: a,
			src:  fakeSource{wm: min_(80), start: t0, before: busy, after: busy, change: min_(60)},
			want: Pass, reason: "below the margin",
		},
		{
			name: "pass: closed, busy, no change", timeline: []Deploy{a}, judge: a,
			src:  fakeSource{wm: min_(120), start: t0, before: busy, after: busy, change: min_(60)},
			want: Pass, reason: "below the margin",
		},
		{
			name: "pass when cohort and control rise together (a fleet-wide change is not the deploy's)", timeline: []Deploy{a}, judge: a,
			src: fakeSource{wm: min_(120), start: t0, before: busy, change: min_(60),
				after: rates{cohortReq: 600, cohortErr: 90, controlReq: 24000, controlErr: 720}},
			want: Pass,
		},
		{
			name: "insufficient: the cohort's rate doubled but no finding fired", timeline: []Deploy{a}, judge: a,
			src: fakeSource{wm: min_(120), start: t0, before: busy, change: min_(60),
				after: rates{cohortReq: 600, cohortErr: 60, controlReq: 24000, controlErr: 240}},
			want: Insufficient, reason: "not below the margin",
		},
		{
			name: "insufficient: testwiki's real traffic is too little to bound anything at alpha", timeline: []Deploy{a}, judge: a,
			src:  fakeSource{wm: min_(120), start: t0, before: quiet, after: quiet, change: min_(60)},
			want: Insufficient, reason: "too little traffic",
		},
		{
			name: "insufficient: no cohort errors before the deploy bound nothing", timeline: []Deploy{a}, judge: a,
			src: fakeSource{wm: min_(120), start: t0, change: min_(60),
				before: rates{cohortReq: 600, controlReq: 24000, controlErr: 240}, after: busy},
			want: Insufficient, reason: "bound nothing",
		},
		{
			name: "insufficient: less than the pre-period of data before the deploy", timeline: []Deploy{a}, judge: a,
			src:  fakeSource{wm: min_(120), start: min_(45), before: busy, after: busy, change: min_(60)},
			want: Insufficient, reason: "only 15m0s of data before the deploy",
		},
		{
			name: "insufficient: the deploy's counts left the window", timeline: []Deploy{a}, judge: a,
			src:  fakeSource{wm: min_(300), start: min_(180), before: busy, after: busy, change: min_(60)},
			want: Insufficient, reason: "no data",
		},
		{
			name: "insufficient: no cohort requests after the deploy", timeline: []Deploy{a}, judge: a,
			src: fakeSource{wm: min_(120), start: t0, before: busy, change: min_(60),
				after: rates{controlReq: 24000, controlErr: 240}},
			want: Insufficient, reason: "no cohort or control requests",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := Timeline(tc.timeline)
			r := Judge(tl, tc.judge, tc.findings, &tc.src, cfg)
			require.Equal(t, tc.want, r.Verdict, r.Evidence.Reason)
			require.Equal(t, tc.judge, r.Deploy)
			require.Equal(t, tc.ids, r.Findings)
			require.Contains(t, r.Evidence.Reason, tc.reason)
			if r.Verdict == Pass {
				require.Less(t, r.Evidence.RatioChangeUpper, cfg.Margin)
				require.Positive(t, r.Evidence.RatioChangeUpper)
				require.NotNil(t, r.Evidence.Before)
				require.NotNil(t, r.Evidence.After)
				require.Equal(t, r.Evidence.WindowEnd, r.Evidence.After.To)
			}
		})
	}
}

func TestWindowEnd(t *testing.T) {
	a := pretrain("a", min_(0))
	b := pretrain("b", min_(20))
	g0 := train("group0", "v2", min_(10))
	g0b := train("group0", "v3", min_(100))
	g1 := train("group1", "v2", min_(30))
	tl := Timeline([]Deploy{g1, b, g0b, a, g0})
	require.Equal(t, min_(20), WindowEnd(tl, a, time.Hour), "the next Pretrain deploy")
	require.Equal(t, min_(80), WindowEnd(tl, b, time.Hour), "none after: the attribution length")
	require.Equal(t, min_(70), WindowEnd(tl, g0, time.Hour), "a train deploy of another group does not close it; the same group's after 90 minutes is too late")
	require.Equal(t, min_(90), WindowEnd(tl, g1, time.Hour))
}

func TestTimelineKeepsTheFirstOfEachDeploy(t *testing.T) {
	derived := train("group0", "1.47.0-wmf.17", min_(12))
	marker := train("group0", "1.47.0-wmf.17", min_(10))
	marker.Source = "api"
	other := train("group1", "1.47.0-wmf.17", min_(30))
	tl := Timeline([]Deploy{derived, other, marker})
	require.Equal(t, []Deploy{marker, other}, tl)
}

func TestBound(t *testing.T) {
	c := func(xe, xr, ye, yr int64) Counts {
		return Counts{CohortErrors: xe, CohortRequests: xr, ControlErrors: ye, ControlRequests: yr}
	}
	// No change: the estimate is 1 and the bound above it, shrinking with
	// more data.
	psi, small := Bound(c(20, 1000, 200, 100000), c(20, 1000, 200, 100000), 1e-3)
	require.InDelta(t, 1, psi, 1e-12)
	require.Greater(t, small, 1.0)
	_, big := Bound(c(2000, 100000, 20000, 10000000), c(2000, 100000, 20000, 10000000), 1e-3)
	require.Greater(t, big, 1.0)
	require.Less(t, big, small)
	require.Less(t, big, 1.5)
	// A stricter level gives a wider bound.
	_, loose := Bound(c(200, 1000, 2000, 100000), c(200, 1000, 2000, 100000), 0.05)
	_, strict := Bound(c(200, 1000, 2000, 100000), c(200, 1000, 2000, 100000), 1e-3)
	require.Less(t, loose, strict)
	// The bound is the cohort's upper limit over the control's lower one:
	// with a control this large it is close to the cohort's own.
	_, hi := detect.RateRatioCI(200, 200, 1000, 1000, 1-1e-3)
	_, u := Bound(c(200, 1000, 2e6, 1e9), c(200, 1000, 2e6, 1e9), 1e-3)
	require.InDelta(t, hi, u, hi*0.01)
	// Undefined: no cohort errors before, or no control errors after.
	_, inf := Bound(c(0, 1000, 200, 100000), c(20, 1000, 200, 100000), 1e-3)
	require.True(t, math.IsInf(inf, 1))
	_, inf = Bound(c(20, 1000, 200, 100000), c(20, 1000, 0, 100000), 1e-3)
	require.True(t, math.IsInf(inf, 1))
}

func TestLedgerFreezesClosedVerdicts(t *testing.T) {
	a := pretrain("mw-pretrain-main-aaaa", min_(60))
	src := &fakeSource{wm: min_(100), start: t0, before: busy, after: busy, change: min_(60)}
	l := NewLedger(cfg)
	rs := l.Judge([]Deploy{a}, nil, src)
	require.Len(t, rs, 1)
	require.Equal(t, Pending, rs[0].Verdict)

	src.wm = min_(121)
	rs = l.Judge([]Deploy{a}, nil, src)
	require.Equal(t, Pass, rs[0].Verdict)
	calls := src.countsRequests

	// Later the counts before the deploy leave the ring: the verdict,
	// judged when the window closed, stays.
	src.wm, src.start = min_(200), min_(80)
	rs = l.Judge([]Deploy{a}, nil, src)
	require.Equal(t, Pass, rs[0].Verdict)
	require.Equal(t, calls, src.countsRequests, "a closed verdict is not judged again")
	require.Equal(t, []string{}, rs[0].Findings)

	// A finding that fires late, for an onset inside the window, turns it
	// into a fail, and the fail stays after the finding is dropped.
	late := finding("s1", detect.KindSharedDataSpillover, detect.StateFiring, &a, min_(118))
	rs = l.Judge([]Deploy{a}, []detect.Finding{late}, src)
	require.Equal(t, Fail, rs[0].Verdict)
	require.Equal(t, []string{"s1"}, rs[0].Findings)
	require.NotNil(t, rs[0].Evidence.After, "the counts read at the close stay as evidence")
	rs = l.Judge([]Deploy{a}, nil, src)
	require.Equal(t, Fail, rs[0].Verdict)
	require.Equal(t, []string{"s1"}, rs[0].Findings)

	// A deploy that left the timeline is forgotten.
	b := pretrain("mw-pretrain-main-bbbb", min_(190))
	rs = l.Judge([]Deploy{b}, nil, src)
	require.Len(t, rs, 1)
	require.Empty(t, l.closed)
	require.Empty(t, l.blamed)
}

func TestJudgeAllNewestFirst(t *testing.T) {
	a := pretrain("a", min_(0))
	b := pretrain("b", min_(20))
	g := train("group0", "v", min_(10))
	src := &fakeSource{wm: min_(30), start: t0.Add(-time.Hour), before: busy, after: busy}
	rs := JudgeAll(Timeline([]Deploy{a, b, g}), nil, src, cfg)
	require.Equal(t, []string{"b", "v", "a"}, []string{rs[0].Version, rs[1].Version, rs[2].Version})
	require.Equal(t, []Verdict{Pending, Pending, Pass}, []Verdict{rs[0].Verdict, rs[1].Verdict, rs[2].Verdict})
}

// TestLedgerReadsTheCountsBeforeEarly: the counts before a deploy are read
// while the window certainly holds them, so a window that closes after they
// left the ring is still judged on them.
func TestLedgerReadsTheCountsBeforeEarly(t *testing.T) {
	a := pretrain("mw-pretrain-main-aaaa", min_(60))
	src := &fakeSource{wm: min_(61), start: t0, before: busy, after: busy, change: min_(60)}
	l := NewLedger(cfg)
	require.Equal(t, Pending, l.Judge([]Deploy{a}, nil, src)[0].Verdict)

	src.wm, src.start = min_(121), min_(55) // the hour before has mostly left the ring
	r := l.Judge([]Deploy{a}, nil, src)[0]
	require.Equal(t, Pass, r.Verdict, r.Evidence.Reason)
	require.Equal(t, min_(0), r.Evidence.Before.From)

	// Judged for the first time only then, the same deploy lacks them.
	r = NewLedger(cfg).Judge([]Deploy{a}, nil, src)[0]
	require.Equal(t, Insufficient, r.Verdict)
	require.Contains(t, r.Evidence.Reason, "only 5m0s of data before the deploy")
}

// TestTimelineMergesAMarkerWithItsRollout: a Pretrain marker posted for a
// rollout the events show, a minute apart in either order, is one deploy
// named by both versions; a finding naming either fails it, and the
// window is not closed by the other.
func TestTimelineMergesAMarkerWithItsRollout(t *testing.T) {
	rollout := pretrain("main-ft59cjgm8", min_(30))
	marker := Deploy{Scope: "pretrain", Version: "build-123", At: min_(31), Source: "api"}
	later := pretrain("main-zz", min_(45))
	tl := Timeline([]Deploy{later, marker, rollout})
	require.Len(t, tl, 2)
	require.Equal(t, "main-ft59cjgm8", tl[0].Version)
	require.Equal(t, []string{"build-123"}, tl[0].Aliases)
	require.True(t, tl[0].Names("build-123"))
	require.Equal(t, min_(45), WindowEnd(tl, tl[0], time.Hour), "a deploy more than the merge apart is the next one")

	f := finding("s1", detect.KindSharedDataSpillover, detect.StateFiring, &marker, min_(40))
	src := &fakeSource{wm: min_(35), start: t0, before: busy, after: busy}
	r := Judge(tl, tl[0], []detect.Finding{f}, src, cfg)
	require.Equal(t, Fail, r.Verdict)
	require.Equal(t, []string{"s1"}, r.Findings)

	// Ten minutes or more apart they stay two deploys.
	tl = Timeline([]Deploy{pretrain("a", min_(0)), pretrain("b", min_(10))})
	require.Len(t, tl, 2)
	require.Empty(t, tl[0].Aliases)
}
