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
	lastEvidence int64  // event time of the newest supporting evidence
	held         guards // what held it back at its last evaluation while pending; nil once it fires
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
// resolved finding starts firing when no guard held it, pending otherwise
// (held nil: it fires). A
// firing finding keeps the evidence, deploy and detection time it fired on
// (a later Pretrain deploy does not rewrite what brought it); one that
// resolved less than detect.resolve_after ago and fires again is the same
// incident come back: it reopens with its identity and first detection.
func (d *Detector) upsert(kind Kind, key string, at int64, held guards, fill func(*Finding)) {
	fire := !held.blocks()
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
	t.held = held
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
