// Package detect decides, from the window's counts and deploy timeline,
// whether code deployed to Pretrain is hurting the wikis. It is a pure
// function of (window, deploy timeline, config, watermark): no I/O and no
// clock, so live runs and replays give the same findings for the same records.
//
// Every bucket that closes behind the watermark is evaluated once, in order.
//
// # Attribution: code before place
//
// Timing (an onset soon after a Pretrain deploy) and place (a shared-data
// channel, errors on the cohort's DB section) never suffice to blame
// Pretrain: a database incident on s3, or a train deploy to group0, produce
// both. What only Pretrain's code explains is harm that depends on which
// code served the request. So every Pretrain-blaming rule runs the code
// test: the exact conditional binomial test of the per-request error rates
// of Pretrain-served traffic (the cohort, testwiki, on the pretrain scope)
// against train-served traffic in the same shared-data scope (the
// train-served wikis of the cohort's DB sections, or of the fingerprint's
// data path). Its verdict is pretrain-worse (P(X ≥ k) under ratio = margin
// at most 0.01: a contained regression), pretrain-spared (P(X ≤ k) under
// ratio = 1/margin at most 0.01: a spillover), code-agnostic (both 95% bounds within a factor of about 3 of
// 1: an infrastructure fault, never a blame) or undetermined (testwiki's
// traffic too thin to tell: nothing is blamed). An error that looks like a
// database fault's (connection, lag, read-only, lock wait, deadlock, by
// class, channel or message) needs the code test at alpha instead of 0.01. Every finding's evidence carries the code test,
// the candidates weighed (the Pretrain deploy, train deploys of the groups
// involved within detect.attribution, section and fleet incidents, each
// with its evidence and whether it fits) and the margin by which the chosen
// cause wins; when no cause wins, no Pretrain-blaming finding is emitted
// and CohortStatus lists the signal as undetermined with its candidates.
//
// Counts are of distinct requests (reqId): the window counts each request
// once among its (wiki, scope)'s erroring requests and once per
// fingerprint, in the bucket of its first line, however many lines and
// buckets it spans (a fixed 1-MiB request set per shard; see the window
// package). Traffic of mw-pretrain's debug release (developers choosing
// Pretrain with the debug header) is in no wiki's counts; status lists it.
//
// # Rules, one per finding kind
//
// pretrain-regression, one finding per cohort (key "cohort"), fed by two
// tests. (a) Rate: after each Pretrain deploy, the cohort's Pretrain-served
// erroring requests are tested against those of the train-served wikis of
// its DB sections (not the whole fleet: a section incident raises both)
// with the exact conditional binomial test run sequentially as a mixture
// likelihood-ratio e-process. The null rate ratio rho0 is the larger of the
// margin and the 90% upper bound of the same ratio before the deploy
// (difference in differences). It fires when E ≥ 1/alpha, in at least
// detect.min_buckets buckets, with the code test pretrain-worse and no
// fleet-wide incident. (b) New fingerprint: a fingerprint first seen after
// the deploy, k distinct Pretrain-served requests on the cohort against m
// occurrences on the train-served wikis of its sections (and Pretrain-served
// ones elsewhere), fires when the code test's P(X ≥ k | k+m) under ratio =
// margin is at most alpha/K (K the new fingerprints tested since the
// deploy), with detect.min_distinct requests in detect.min_buckets buckets.
//
// shared-data-spillover, one finding per shared-data path (key
// "spill:<class>", or "spill:jobrunner"), fed by two tests. (a) New
// fingerprint: first seen within detect.attribution after a Pretrain
// deploy, served by TRAIN code, with a shared-data class (channel or frame)
// or landing on the cohort through the train jobrunners. Its onset must be
// significant (absent for the pre-period and seen n times since: P(all n
// after the deploy) = (post/(pre+post))^n ≤ alpha/K); where the path reaches
// only some wikis (the cohort's DB section, its Wikibase repo's clients)
// the errors must concentrate there beyond their request share; and the
// code test must say pretrain-spared (except through the jobrunners, where
// only train code reads the cohort's jobs). An error carried only by
// versions a train deploy brought within detect.attribution before its
// onset is train-regression's, whatever the order of the deploys; one
// carried by old and new versions is undetermined. (b) Existing
// fingerprint: a shared-data fingerprint first seen before the Pretrain
// deploy and seen at least 10 times since is tested once a minute: its
// fleet-wide rate per request after the deploy against before (own
// history, rate ratio > margin), then per DB section the section's
// before/after change against the 90% upper bound of the other sections'
// change times the margin (difference in differences, exact conditional
// test, level alpha/K), and the code test on the section (pretrain-spared);
// no train deploy of a group with wikis there within detect.attribution
// may fit (then it is undetermined). A core-DB fingerprint is tested only
// on the cohort's sections. Both tests are withheld while a section
// incident on the wikis concerned, or a fleet-wide incident, is more than
// this fingerprint (it makes less than half of the incident's erroring
// requests): a code-specific error that makes most of a fleet-wide rise is
// the spillover itself, even when it raises every section.
//
// pretrain-leak. Pretrain-scope requests or errors for a wiki outside the
// cohort, at least detect.leak_min_events of them within
// detect.anomaly_window, through the main, canary or jobrunner releases:
// the debug release serves any wiki by design and is not counted.
//
// train-regression. A fingerprint first seen after a train deploy of a
// group, carried only by the versions deploys brought within
// detect.attribution before its onset, on train-scope wikis. The p-value
// is twice the smaller of P(all n in the deployed groups) = s^n (s their
// request share) and the onset test. It is the train's, never Pretrain's.
//
// wiki-anomaly, one finding per wiki, fed by two tests. (a) Errors: per
// wiki (train scope, outside the cohort) an e-detector (the e-process with
// its log-likelihood floored at 0, a CUSUM of the same increments) of the
// wiki's erroring requests against all other wikis', with rho0 from the
// wiki's own trailing baseline: the 99% upper bound of the ratio over the
// counts the baseline's EWMA (half-life 1 h) weighs. (b) 5xx: a CUSUM of
// the wiki's 5xx responses (access log) against its own baseline share (the
// 99% upper bound over the EWMA's counts, at least margin × its point
// estimate and 0.01%), for jumps of 3× to 50×; an excursion that has not
// fired within an hour starts over (its baseline, frozen meanwhile, is stale). The error test's threshold
// keeps expected false alarms over a week across all wikis at most alpha
// (Bonferroni over wikis and buckets, Lorden's bound); the 5xx test's at
// most one (it blames nobody, and a 5xx share that matters jumps by an order
// of magnitude). Suppressed when a train deploy of
// the wiki's group within detect.attribution explains it, during a
// fleet-wide incident or a section incident the wiki makes less than half
// of (the excursion is reset, not postponed), or when the fingerprints of
// firing findings make at least half of its errors since the onset.
//
// Section and fleet incidents. Per DB section, the train-served erroring
// requests and 5xx of the last 30 s, and of the last 2 minutes (a small
// section's incident is a few errors a minute), against the median rate of
// the section's calm 30-s windows over the last hour: 3× and significant
// (Poisson excess p ≤ 1e-6) is a section incident, until 5 minutes calm; CohortStatus shows
// it with, on the cohort's section, the code test of the cohort against the
// section since it began (code-agnostic: both scopes rose alike). Three
// sections at once is a fleet-wide incident. Neither is ever a Pretrain
// blame; both are candidates in every attribution.
//
// Guards: a finding needs its signal in detect.min_buckets buckets and
// detect.min_distinct distinct requests (one request or one crawler must
// not make a finding); without the pre-period a fingerprint cannot be
// called new and the state is "insufficient evidence", not OK.
//
// Lifecycle: pending (a signal, not yet significant or guarded) → firing →
// resolved when no supporting evidence arrived for detect.resolve_after
// (hysteresis: firing needs the full threshold, staying firing only needs
// evidence). A firing finding keeps the evidence and the deploy it fired
// on, so a later Pretrain deploy does not rewrite what brought it; one that
// resolved less than detect.resolve_after ago and fires again reopens with
// its identity and first detection time. Identity is kind + key, hashed,
// stable across restarts. Summaries and evidence quote the statistic that
// made the finding fire, never one that did not apply.
package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// Config tunes detection. Its defaults and validation live in package
// config alone (config.Default, Config.Validate); New only refuses values
// no test can run with.
type Config struct {
	Cohort        []string // Pretrain cohort dbnames
	SharedWith    []string // extra wikis known to share data with the cohort
	Alpha         float64
	Margin        float64
	MinPrePeriod  time.Duration
	Attribution   time.Duration
	ResolveAfter  time.Duration
	AnomalyWindow time.Duration
	MinBuckets    int
	MinDistinct   int
	LeakMinEvents int
}

// Detector holds the sequential state of every test. One goroutine owns it.
type Detector struct {
	cfg   Config
	wikis *wikimap.Map
	w     *window.Store
	topo  *topology

	cohortIDs []wikimap.ID
	bw        int64 // bucket width, ns
	next      int64 // start of the next bucket to evaluate; 0 before the first
	dataStart int64 // first bucket that had any event

	findings map[string]*tracked
	changed  []string // ids whose state changed in the current Evaluate

	cohortSections []bool  // by fleet section index: sections of the cohort
	scopeSet       wikiSet // train-served wikis of the cohort's sections
	undecided      []Undetermined
	debugBuf       []window.DebugTraffic
	ids            []window.SeenCount
	existing       map[uint64]*existingState // shared fingerprints older than the Pretrain deploy, rising since

	cohortRate rateState
	wikiRate   []wikiState
	fleet      fleetState
	fps        map[uint64]*fpState
	leaks      leakState

	// scratch, reused across buckets
	trainB, preB []window.Counts
	sumT, sumP   []window.Counts
	infos        []window.FingerprintInfo
	deploys      []window.Deploy
	sinceBuf     []window.Counts // trainSince's cache
	sinceFrom    int64
	sinceTo      int64
}

type tracked struct {
	f            Finding
	lastEvidence int64 // event time of the newest supporting evidence
}

// New returns a Detector reading from w.
func New(cfg Config, wikis *wikimap.Map, w *window.Store) (*Detector, error) {
	if cfg.Alpha <= 0 || cfg.Alpha >= 1 || cfg.Margin < 1 || cfg.MinBuckets < 1 || cfg.MinDistinct < 1 {
		return nil, errors.New("detect: alpha must be in (0,1), margin ≥ 1, min buckets and distinct ≥ 1")
	}
	d := &Detector{cfg: cfg, wikis: wikis, w: w, bw: w.BucketWidth(),
		findings: map[string]*tracked{}, fps: map[uint64]*fpState{}}
	for _, name := range cfg.Cohort {
		id := wikis.ByNameString(name)
		if id == 0 {
			return nil, fmt.Errorf("pretrain.cohort: unknown wiki %q", name)
		}
		d.cohortIDs = append(d.cohortIDs, id)
	}
	var extra []wikimap.ID
	for _, name := range cfg.SharedWith {
		id := wikis.ByNameString(name)
		if id == 0 {
			return nil, fmt.Errorf("detect.shared_data_wikis: unknown wiki %q", name)
		}
		extra = append(extra, id)
	}
	d.topo = newTopology(wikis, d.cohortIDs, extra)
	d.initFleet()
	d.scopeSet = newWikiSet(wikis.Len())
	for id := 1; id <= wikis.Len(); id++ {
		if d.cohortSections[d.fleet.sectionOf[id]] && !d.topo.cohort.has(wikimap.ID(id)) {
			d.scopeSet[id] = true
		}
	}
	d.existing = map[uint64]*existingState{}
	d.wikiRate = make([]wikiState, wikis.Len()+1)
	d.leaks.count = make([]int64, wikis.Len()+1)
	d.leaks.first = make([]int64, wikis.Len()+1)
	d.leaks.last = make([]int64, wikis.Len()+1)
	return d, nil
}

// Evaluate evaluates every bucket that closed at or before watermark and
// returns the findings whose state changed (first firing, resolution), in
// a deterministic order.
func (d *Detector) Evaluate(watermark int64) []Finding {
	d.changed = d.changed[:0]
	if d.next == 0 {
		oldest := d.w.Oldest()
		if oldest == 0 || watermark == 0 {
			return nil
		}
		d.next = d.w.BucketStart(oldest)
	}
	// Buckets that fell out of the ring while we were not looking cannot be
	// evaluated; skip to the oldest one kept.
	if o := d.w.BucketStart(d.w.Oldest()); d.next < o {
		d.next = o
	}
	for d.next+d.bw <= watermark {
		d.evalBucket(d.next, d.next+d.bw)
		d.next += d.bw
	}
	slices.Sort(d.changed)
	d.changed = slices.Compact(d.changed)
	out := make([]Finding, 0, len(d.changed))
	for _, id := range d.changed {
		out = append(out, d.findings[id].f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].DetectedAt.Before(out[j].DetectedAt) })
	return out
}

// Findings returns every finding not resolved more than an hour of event
// time ago, ordered by detection time then id.
func (d *Detector) Findings() []Finding {
	out := make([]Finding, 0, len(d.findings))
	for _, t := range d.findings {
		out = append(out, t.f)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].DetectedAt.Equal(out[j].DetectedAt) {
			return out[i].DetectedAt.Before(out[j].DetectedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// FleetIncident reports whether a fleet-wide incident is under way as of the
// last evaluated bucket, and since when.
func (d *Detector) FleetIncident() (bool, time.Time) {
	if !d.fleet.active {
		return false, time.Time{}
	}
	return true, time.Unix(0, d.fleet.since).UTC()
}

// deployContext is what the deploy timeline says as of one bucket.
type deployContext struct {
	pretrain    *window.Deploy           // latest Pretrain deploy (not the initial state)
	train       map[string]window.Deploy // latest train deploy per group
	trainLatest *window.Deploy
}

func (d *Detector) deployContext(end int64) deployContext {
	d.deploys = d.w.Deploys(d.deploys[:0])
	dc := deployContext{train: map[string]window.Deploy{}}
	for i := range d.deploys {
		dep := d.deploys[i]
		if dep.Initial || dep.At >= end {
			continue
		}
		if dep.Scope == event.ScopePretrain {
			dc.pretrain = &d.deploys[i]
			continue
		}
		dc.train[dep.Group] = dep
		dc.trainLatest = &d.deploys[i]
	}
	return dc
}

func (d *Detector) evalBucket(b0, b1 int64) {
	d.trainB = d.w.SumWikis(event.ScopeTrain, b0, b1, d.trainB[:0])
	d.preB = d.w.SumWikis(event.ScopePretrain, b0, b1, d.preB[:0])
	if d.dataStart == 0 {
		for i := range d.trainB {
			if d.trainB[i].Requests+d.trainB[i].Errors+d.preB[i].Requests+d.preB[i].Errors > 0 {
				d.dataStart = b0
				break
			}
		}
		if d.dataStart == 0 {
			return
		}
	}
	dc := d.deployContext(b1)
	d.updateFleet(b0, b1)
	d.cohortRateTest(b0, b1, dc)
	d.leakTest(b0, b1)
	d.wikiAnomalyTest(b0, b1, dc)
	d.fingerprintTests(b0, b1, dc)
	d.existingSpillover(b0, b1, dc)
	d.pruneUndetermined(b1)
	d.resolveQuiet(b1)
}

// upsert records supporting evidence for the finding (kind, key). A new or
// resolved finding starts firing when fire is true, pending otherwise. A
// firing finding keeps the evidence, deploy and detection time it fired on
// (a later Pretrain deploy does not rewrite what brought it); one that
// resolved less than detect.resolve_after ago and fires again is the same
// incident come back: it reopens with its identity and first detection.
func (d *Detector) upsert(kind Kind, key string, at int64, fire bool, fill func(*Finding)) {
	id := findingID(kind, key)
	t, ok := d.findings[id]
	if ok && t.f.State == StateResolved && fire && t.f.ResolvedAt != nil && at-t.f.ResolvedAt.UnixNano() <= int64(d.cfg.ResolveAfter) {
		t.f.State, t.f.ResolvedAt = StateFiring, nil
		t.lastEvidence = at
		d.changed = append(d.changed, id)
		return
	}
	if !ok || t.f.State == StateResolved {
		if !fire && ok {
			return // a resolved finding comes back only at full strength
		}
		t = &tracked{f: Finding{ID: id, Kind: kind, Severity: kind.Severity(), State: StatePending}}
		d.findings[id] = t
		if fire {
			d.changed = append(d.changed, id)
		}
	}
	t.lastEvidence = at
	prev := t.f.State
	if prev == StateFiring {
		return // keep the evidence it fired on; later evidence only keeps it alive
	}
	fill(&t.f)
	rateRatioLower(&t.f.Evidence)
	finiteEvidence(&t.f.Evidence)
	t.f.ID, t.f.Kind, t.f.Severity = id, kind, kind.Severity()
	if fire {
		t.f.State = StateFiring
		t.f.DetectedAt = time.Unix(0, at).UTC()
		t.f.ResolvedAt = nil
		d.changed = append(d.changed, id)
	} else {
		t.f.State = StatePending
	}
}

// touch extends a finding's life without changing its evidence: the
// signal is still there, even if the test is no longer run (hysteresis).
func (d *Detector) touch(kind Kind, key string, at int64) {
	if t, ok := d.findings[findingID(kind, key)]; ok && t.f.State != StateResolved {
		t.lastEvidence = at
	}
}

func (d *Detector) resolveQuiet(now int64) {
	for id, t := range d.findings {
		switch t.f.State {
		case StateResolved:
			if now-t.lastEvidence > 2*int64(time.Hour) {
				delete(d.findings, id)
			}
		default:
			if now-t.lastEvidence >= int64(d.cfg.ResolveAfter) {
				if t.f.State == StatePending {
					delete(d.findings, id) // never fired: nothing to resolve
					continue
				}
				r := time.Unix(0, now).UTC()
				t.f.State, t.f.ResolvedAt = StateResolved, &r
				d.changed = append(d.changed, id)
			}
		}
	}
}

func findingID(kind Kind, key string) string {
	h := sha256.Sum256([]byte(string(kind) + "\x00" + key))
	return hex.EncodeToString(h[:8])
}

func (d *Detector) wikiName(id wikimap.ID) string {
	if w := d.wikis.Wiki(id); w != nil {
		return w.DBName
	}
	return fmt.Sprintf("wiki#%d", id)
}

func (d *Detector) cohortNames() []string {
	out := make([]string, 0, len(d.cohortIDs))
	for _, id := range d.cohortIDs {
		out = append(out, d.wikiName(id))
	}
	return out
}

func deployOf(dep *window.Deploy) *Deploy {
	if dep == nil {
		return nil
	}
	return &Deploy{Scope: dep.Scope.String(), Group: dep.Group, Version: dep.Version, At: time.Unix(0, dep.At).UTC(), Source: dep.Source}
}

func ts(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func fmtP(p float64) string {
	if p == 0 {
		return "<1e-300"
	}
	return fmt.Sprintf("%.2g", p)
}

func ratio(x, rx, y, ry float64) float64 {
	if rx <= 0 || ry <= 0 || y <= 0 {
		if x > 0 {
			return math.Inf(1)
		}
		return 0
	}
	return (x / rx) / (y / ry)
}

// CohortStatus is the state of the cohort's rate test, so that "not enough
// evidence yet" is visible rather than a silent OK.
type CohortStatus struct {
	Deploy         *Deploy `json:"deploy,omitempty"` // the Pretrain deploy it follows
	Testing        bool    `json:"testing"`
	Insufficient   string  `json:"insufficient_evidence,omitempty"`
	CohortErrors   int64   `json:"cohort_errors"`
	CohortRequests int64   `json:"cohort_requests"`
	ControlErrors  int64   `json:"control_errors"`
	NullRatio      float64 `json:"null_ratio,omitempty"`
	EValue         float64 `json:"e_value"`
	Threshold      float64 `json:"e_value_threshold"`
	NewTested      int     `json:"new_fingerprints_tested"`
	// Control names the train-served traffic the cohort is compared with.
	Control string `json:"control"`
	// SectionIncidents are DB sections whose train-served error or 5xx rate
	// is well above their baseline: explanations of their own, never a
	// Pretrain blame.
	SectionIncidents []SectionIncident `json:"section_incidents"`
	// Undetermined lists Pretrain-blaming signals no cause won, with the
	// candidates weighed: nothing was blamed.
	Undetermined []Undetermined `json:"undetermined"`
	// Debug is the traffic developers sent through mw-pretrain's debug
	// release: not a leak, and in no wiki's statistics.
	Debug []DebugTraffic `json:"debug_release"`
}

// CohortStatus reports the cohort test as of the last evaluated bucket.
func (d *Detector) CohortStatus() CohortStatus {
	rs := &d.cohortRate
	st := CohortStatus{Threshold: 1 / d.cfg.Alpha, Control: d.scopeName(),
		SectionIncidents: d.sectionIncidents(), Undetermined: append([]Undetermined(nil), d.undecided...), Debug: d.debugTraffic()}
	if st.SectionIncidents == nil {
		st.SectionIncidents = []SectionIncident{}
	}
	if st.Undetermined == nil {
		st.Undetermined = []Undetermined{}
	}
	if rs.anchor == 0 {
		st.Insufficient = "no Pretrain deploy seen in the window yet"
		return st
	}
	st.Deploy = &Deploy{Scope: "pretrain", At: ts(rs.anchor)}
	st.Insufficient = rs.insufficient
	st.Testing = rs.insufficient == "" && d.next-rs.anchor <= int64(d.cfg.Attribution)
	st.CohortErrors, st.CohortRequests, st.ControlErrors = rs.x, rs.rc, rs.y
	st.NullRatio, st.EValue, st.NewTested = rs.rho0, rs.ep.E(), len(rs.newTested)
	if st.Insufficient == "" && rs.x < int64(d.cfg.MinBuckets) {
		st.Insufficient = fmt.Sprintf("%d cohort errors since the deploy: too few to tell a regression from noise yet", rs.x)
	}
	return st
}

// rateRatioLower sets the exact one-sided 95% lower bound of the
// cohort/control rate ratio from the evidence's own counts. The point
// estimate is unbounded when the control has no errors (the usual case for
// a new fingerprint); the bound still says how large the ratio is at least.
func rateRatioLower(e *Evidence) {
	e.RateRatioLower = 0
	if e.CohortErrors <= 0 || e.CohortRequests <= 0 || e.ControlRequests <= 0 {
		return
	}
	lo, _ := RateRatioCI(e.CohortErrors, e.ControlErrors, float64(e.CohortRequests), float64(e.ControlRequests), 0.9)
	if lo > 0 && !math.IsInf(lo, 0) && !math.IsNaN(lo) {
		e.RateRatioLower = lo
	}
}

// finiteEvidence keeps the evidence encodable: JSON has no infinity or NaN
// (a rate ratio against a control with no errors is infinite; an e-value
// can overflow). Such values become 0 and the note says why.
func finiteEvidence(e *Evidence) {
	for _, v := range []struct {
		name string
		p    *float64
	}{{"rate_ratio", &e.RateRatio}, {"baseline_ratio", &e.BaselineRatio}, {"p_value", &e.PValue}, {"e_value", &e.EValue}, {"alpha", &e.Alpha}} {
		if math.IsInf(*v.p, 0) || math.IsNaN(*v.p) {
			what := "undefined"
			if math.IsInf(*v.p, 1) {
				what = "unbounded"
			}
			*v.p = 0
			if !strings.Contains(e.Note, v.name) {
				e.Note = strings.TrimPrefix(e.Note+"; "+v.name+" "+what+" (reported as 0)", "; ")
			}
		}
	}
}
