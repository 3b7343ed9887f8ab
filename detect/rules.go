package detect

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/montanaflynn/stats"
	"gonum.org/v1/gonum/mathext"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// rateState is the cohort rate test anchored at the latest Pretrain deploy.
type rateState struct {
	anchor       int64 // At of the deploy it follows; 0 = none
	rho0         float64
	ep           EProcess
	insufficient string // why the test cannot run, "" when it runs
	buckets      int    // buckets with cohort errors since the anchor
	excessLast   int64  // last bucket whose cohort errors exceeded the null
	x, y, rc, rk int64  // since the anchor
	bx, by       int64  // baseline before the anchor
	brc, brk     int64
	newTested    map[uint64]bool // new fingerprints tested since the anchor (Bonferroni K)
	spillTested  map[uint64]bool
}

// cohortCounts sums the cohort's erroring requests (distinct reqIds, not
// log lines) and requests.
func (d *Detector) cohortCounts(c []window.Counts, scope event.Scope) (errs, reqs int64) {
	for _, id := range d.cohortIDs {
		errs += c[id].ErrorRequests
		reqs += c[id].Requests
	}
	return errs, reqs
}

// controlCounts sums the train fleet outside the cohort.
func (d *Detector) controlCounts(c []window.Counts) (errs, reqs int64) {
	for id := 1; id < len(c); id++ {
		if d.topo.cohort.has(wikimap.ID(id)) {
			continue
		}
		errs += c[id].ErrorRequests
		reqs += c[id].Requests
	}
	return errs, reqs
}

// scopeCounts sums the train-served wikis of the cohort's DB sections,
// outside the cohort: the traffic that shares the cohort's data but runs
// train code. It is the control of every code test of the cohort.
func (d *Detector) scopeCounts(c []window.Counts) (errs, reqs int64) {
	for id := 1; id < len(c); id++ {
		if d.topo.cohort.has(wikimap.ID(id)) || !d.cohortSections[d.fleet.sectionOf[id]] {
			continue
		}
		errs += c[id].ErrorRequests
		reqs += c[id].Requests
	}
	return errs, reqs
}

// scopeName names the cohort's shared-data scope for evidence.
func (d *Detector) scopeName() string {
	var out []string
	for s, ok := range d.cohortSections {
		if ok {
			out = append(out, d.fleet.names[s])
		}
	}
	return "train-served wikis of " + strings.Join(out, ", ")
}

// keyCohort is the key of the cohort's pretrain-regression: the rate test
// and the new-fingerprint test of one regression share one finding.
const keyCohort = "cohort"

func (d *Detector) cohortRateTest(b0, b1 int64, dc deployContext) {
	rs := &d.cohortRate
	if dc.pretrain == nil {
		return
	}
	if rs.anchor != dc.pretrain.At {
		d.resetCohortRate(dc.pretrain.At)
	}
	x, rc := d.cohortCounts(d.preB, event.ScopePretrain)
	y, rk := d.scopeCounts(d.trainB)
	rs.x, rs.y, rs.rc, rs.rk = rs.x+x, rs.y+y, rs.rc+rc, rs.rk+rk
	if rs.insufficient != "" || b1-rs.anchor > int64(d.cfg.Attribution) {
		return
	}
	if rc == 0 || rk == 0 {
		return
	}
	s := float64(rc) / float64(rc+rk)
	rs.ep.Update(x, y, s, rs.rho0)
	if x > 0 {
		rs.buckets++
	}
	// A bucket whose cohort errors exceed what the null expects keeps a
	// firing finding alive (hysteresis); quiet buckets let it resolve.
	p0 := rs.rho0 * s / (rs.rho0*s + 1 - s)
	if float64(x) > p0*float64(x+y) && x > 0 {
		rs.excessLast = b1
		d.touch(KindPretrainRegression, keyCohort, b1)
	}
	e := rs.ep.E()
	if e < math.Sqrt(1/d.cfg.Alpha) {
		return
	}
	code := codeTest(d.scopeName(), rs.x, rs.rc, rs.y, rs.rk, d.cfg.Margin)
	dep := dc.pretrain
	var scope wikiSet
	if d.scopeSet != nil {
		scope = d.scopeSet
	}
	cands := d.candidates(dep, &code, scope, b1)
	var held guards
	held.add(d.fleet.active, guard{kind: guardFleet})
	held.add(rs.buckets < d.cfg.MinBuckets, guard{kind: guardBurstBuckets, errors: true, buckets: rs.buckets, need: d.cfg.MinBuckets})
	held.add(!(e >= 1/d.cfg.Alpha), guard{kind: guardEValue, e: e, threshold: 1 / d.cfg.Alpha}) // not "<": it fires only at full strength
	held.add(code.Verdict != VerdictPretrainWorse, guard{kind: guardUndecided, reason: "undetermined: " + code.String()})
	fire := !held.blocks()
	note := held.first() // the first guard alone, in this order
	if !fire && e >= 1/d.cfg.Alpha {
		d.undetermined(KindPretrainRegression, keyCohort, b1, note, cands)
	}
	if fire && rs.excessLast != b1 {
		return // fire on a bucket that shows the excess, so onset and evidence agree
	}
	obs := ratio(float64(rs.x), float64(rs.rc), float64(rs.y), float64(rs.rk))
	d.upsert(KindPretrainRegression, keyCohort, b1, fire, func(f *Finding) {
		f.Wikis = d.cohortNames()
		f.StartedAt = ts(dep.At)
		f.Deploy = deployOf(dep)
		f.Evidence = Evidence{
			Test: "sequential conditional binomial (mixture e-process) of erroring requests, Pretrain-served cohort vs " + d.scopeName() +
				", rho0 from the pre-deploy ratio",
			CohortErrors: rs.x, CohortRequests: rs.rc, ControlErrors: rs.y, ControlRequests: rs.rk,
			BaselineErrors: rs.bx, BaselineRequest: rs.brc,
			BaselineRatio: rs.rho0, RateRatio: obs, EValue: e, Alpha: d.cfg.Alpha,
			Insufficient: !fire && note != "", Note: note,
			Code: &code, Candidates: cands, Margin: winMargin(code, cands),
		}
		f.Summary = fmt.Sprintf("%s's Pretrain-served requests fail %s× as often as the %s since the Pretrain deploy at %s (%d erroring requests in %d; null %.2g×, e-value %.3g ≥ %.3g).",
			strings.Join(f.Wikis, ", "), fmtRatio(obs), d.scopeName(), ts(dep.At).Format("15:04"), rs.x, rs.rc, rs.rho0, e, 1/d.cfg.Alpha)
	})
	if fire {
		rs.ep.Reset() // a sequential test restarts after an alarm
	}
}

func (d *Detector) resetCohortRate(at int64) {
	rs := &d.cohortRate
	*rs = rateState{anchor: at, ep: NewEProcess(nil, nil), newTested: map[uint64]bool{}, spillTested: map[uint64]bool{}}
	from := max(d.dataStart, at-2*int64(d.cfg.MinPrePeriod), d.w.Oldest())
	if at-from < int64(d.cfg.MinPrePeriod) {
		rs.insufficient = fmt.Sprintf("only %s of data before the deploy; %s needed", time.Duration(at-from), d.cfg.MinPrePeriod)
		return
	}
	d.sumP = d.w.SumWikis(event.ScopePretrain, from, at, d.sumP[:0])
	d.sumT = d.w.SumWikis(event.ScopeTrain, from, at, d.sumT[:0])
	rs.bx, rs.brc = d.cohortCounts(d.sumP, event.ScopePretrain)
	rs.by, rs.brk = d.scopeCounts(d.sumT)
	if rs.brc == 0 || rs.brk == 0 || rs.by == 0 {
		rs.insufficient = "no cohort or control traffic before the deploy"
		return
	}
	// Difference in differences: test against the upper bound of the
	// cohort's own pre-deploy ratio, never below the practical margin.
	_, hi := RateRatioCI(rs.bx, rs.by, float64(rs.brc), float64(rs.brk), 0.9)
	rs.rho0 = math.Max(d.cfg.Margin, hi)
	if math.IsInf(rs.rho0, 0) || math.IsNaN(rs.rho0) {
		rs.insufficient = "pre-deploy ratio unbounded"
	}
}

// leakState counts Pretrain-scope events for wikis outside the cohort.
type leakState struct {
	count, first, last []int64
}

func (d *Detector) leakTest(b0, b1 int64) {
	ls := &d.leaks
	win := int64(d.cfg.AnomalyWindow)
	var leaked []wikimap.ID
	for id := 1; id < len(d.preB); id++ {
		wid := wikimap.ID(id)
		if d.topo.cohort.has(wid) {
			continue
		}
		c := d.preB[id].Requests + d.preB[id].Errors
		if c == 0 {
			if ls.count[id] > 0 && b1-ls.last[id] > win {
				ls.count[id] = 0
			}
			continue
		}
		if ls.count[id] == 0 || b1-ls.last[id] > win {
			ls.count[id], ls.first[id] = 0, b0
		}
		ls.count[id] += c
		ls.last[id] = b1
		if ls.count[id] >= int64(d.cfg.LeakMinEvents) {
			leaked = append(leaked, wid)
		}
	}
	if len(leaked) == 0 {
		return
	}
	var total, reqs, errs int64
	first := int64(math.MaxInt64)
	var top []WikiCount
	for id := 1; id < len(ls.count); id++ {
		if ls.count[id] < int64(d.cfg.LeakMinEvents) || b1-ls.last[id] > win {
			continue
		}
		total += ls.count[id]
		first = min(first, ls.first[id])
		top = append(top, WikiCount{Wiki: d.wikiName(wikimap.ID(id)), Errors: ls.count[id]})
	}
	for _, id := range leaked {
		reqs += d.preB[id].Requests
		errs += d.preB[id].Errors
	}
	sort.Slice(top, func(i, j int) bool {
		if top[i].Errors != top[j].Errors {
			return top[i].Errors > top[j].Errors
		}
		return top[i].Wiki < top[j].Wiki
	})
	d.upsert(KindPretrainLeak, "leak", b1, true, func(f *Finding) {
		f.Wikis = wikisOf(top)
		if f.StartedAt.IsZero() || ts(first).Before(f.StartedAt) {
			f.StartedAt = ts(first)
		}
		f.Evidence = Evidence{
			Test:         "count of Pretrain-scope events for wikis outside the cohort",
			CohortErrors: errs, CohortRequests: reqs, TopWikis: capTop(top, 10),
			Note: fmt.Sprintf("%d Pretrain-served events for %d wikis outside the cohort (%s) in the last %s",
				total, len(top), strings.Join(d.cohortNames(), ", "), d.cfg.AnomalyWindow),
		}
		f.Summary = fmt.Sprintf("Pretrain (mw-pretrain, releases other than debug) served or logged %d events for %d wikis outside its cohort, e.g. %s: Pretrain code is reaching wikis it must not serve.",
			total, len(top), strings.Join(firstN(f.Wikis, 3), ", "))
	})
}

func wikisOf(top []WikiCount) []string {
	out := make([]string, 0, len(top))
	for _, t := range top {
		out = append(out, t.Wiki)
	}
	sort.Strings(out)
	return out
}

func capTop(top []WikiCount, n int) []WikiCount {
	if len(top) > n {
		return append([]WikiCount(nil), top[:n]...)
	}
	return append([]WikiCount(nil), top...)
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func fmtRatio(r float64) string {
	if math.IsInf(r, 1) {
		return "∞"
	}
	return strconv.FormatFloat(r, 'g', 3, 64)
}

// fleetState watches the train fleet's erroring-request and 5xx rates per
// DB section. One section well above its own baseline is a section
// incident; several sections at once are a fleet-wide incident: nobody's
// deploy, and never Pretrain's fault.
//
// The baseline of a section is robust: the median of its rate over the last
// hour of calm 30-s windows (montanaflynn/stats, once per window, off the
// per-event path), so an earlier spike does not raise it. Sparse sections
// have mostly empty windows, where the median is 0; there the hour's ratio
// of sums is the floor.
type fleetState struct {
	sectionOf []uint8 // wiki → section index
	names     []string
	nsec      int
	hist      []fleetRing // per section: the last hour of calm 30-s windows of erroring requests
	hist5     []fleetRing // the same for 5xx
	recentE   [][3]int64  // last three buckets per section
	recentR   [][3]int64
	recent5   [][3]int64
	// The last two minutes per section: a small section's incident is a
	// few errors a minute, too few for 30 s to tell from noise.
	longE, longR, long5 [][longBuckets]int64
	lpos                int
	pos                 int
	warm                int // buckets seen
	active              bool
	since               int64
	calm                int64 // last bucket that looked like an incident
	rates               []float64

	secActive []bool
	secSince  []int64
	secCalm   []int64
	secFactor []float64
	sec5xx    []float64
	secCode   []*CodeTest
	secTotal  []int64 // erroring requests and 5xx since the incident began
	e, r, e5  []int64 // scratch
}

// fleetRing holds a section's calm 30-s windows.
type fleetRing struct {
	e, r [fleetWindows]int64
	n    int // filled
	next int
}

const fleetWindows = 120 // one hour of 30-s windows

const longBuckets = 12 // two minutes of 10-s buckets

func (fr *fleetRing) add(e, r int64) {
	fr.e[fr.next], fr.r[fr.next] = e, r
	fr.next = (fr.next + 1) % fleetWindows
	fr.n = min(fr.n+1, fleetWindows)
}

// baseline returns the section's usual rate per request.
func (fr *fleetRing) baseline(scratch []float64) (float64, []float64) {
	var se, sr int64
	scratch = scratch[:0]
	for i := 0; i < fr.n; i++ {
		se += fr.e[i]
		sr += fr.r[i]
		if fr.r[i] > 0 {
			scratch = append(scratch, float64(fr.e[i])/float64(fr.r[i]))
		}
	}
	if sr == 0 {
		return 0, scratch
	}
	floor := float64(se) / float64(sr)
	med, err := stats.Median(scratch)
	if err != nil || med <= 0 {
		return floor, scratch
	}
	return med, scratch
}

// elevated says whether re events in rr requests are at least 3× the
// ring's baseline and significant as a Poisson excess; it returns the factor.
func (fs *fleetState) elevated(h *fleetRing, re, rr int64) (bool, float64) {
	if h.n < fleetWindows/2 || rr == 0 {
		return false, 0
	}
	var rate float64
	rate, fs.rates = h.baseline(fs.rates)
	expected := rate * float64(rr)
	if rate <= 0 {
		return false, 0
	}
	f := float64(re) / expected
	return float64(re) >= 3*expected && BinomialUpperTail(re, re+int64(math.Ceil(expected*1000)), 1.0/1001) <= 1e-6, f
}

func (d *Detector) initFleet() {
	fs := &d.fleet
	// The window's section indexes, so a section index means the same here
	// as in its per-section fingerprint counts.
	fs.names = d.w.Sections()
	fs.sectionOf = make([]uint8, d.wikis.Len()+1)
	for _, w := range d.wikis.Wikis() {
		fs.sectionOf[w.ID] = uint8(d.w.SectionOf(w.ID))
	}
	n := len(fs.names)
	fs.nsec = n
	fs.hist, fs.hist5 = make([]fleetRing, n), make([]fleetRing, n)
	fs.recentE, fs.recentR, fs.recent5 = make([][3]int64, n), make([][3]int64, n), make([][3]int64, n)
	fs.longE, fs.longR, fs.long5 = make([][longBuckets]int64, n), make([][longBuckets]int64, n), make([][longBuckets]int64, n)
	fs.secActive, fs.secSince, fs.secCalm = make([]bool, n), make([]int64, n), make([]int64, n)
	fs.secFactor, fs.sec5xx, fs.secCode = make([]float64, n), make([]float64, n), make([]*CodeTest, n)
	fs.secTotal = make([]int64, n)
	fs.e, fs.r, fs.e5 = make([]int64, n), make([]int64, n), make([]int64, n)
	d.cohortSections = make([]bool, n)
	for _, id := range d.cohortIDs {
		d.cohortSections[fs.sectionOf[id]] = true
	}
}

func (d *Detector) updateFleet(b0, b1 int64) {
	fs := &d.fleet
	e, r, e5 := fs.e, fs.r, fs.e5
	clear(e)
	clear(r)
	clear(e5)
	for id := 1; id < len(d.trainB); id++ {
		s := fs.sectionOf[id]
		e[s] += d.trainB[id].ErrorRequests
		r[s] += d.trainB[id].Requests
		e5[s] += d.trainB[id].Status5xx
	}
	fs.pos = (fs.pos + 1) % 3
	elevated := 0
	windowDone := fs.pos == 2
	for s := 0; s < fs.nsec; s++ {
		fs.recentE[s][fs.pos], fs.recentR[s][fs.pos], fs.recent5[s][fs.pos] = e[s], r[s], e5[s]
		var re, rr, r5 int64
		for i := 0; i < 3; i++ {
			re += fs.recentE[s][i]
			rr += fs.recentR[s][i]
			r5 += fs.recent5[s][i]
		}
		upE, fE := fs.elevated(&fs.hist[s], re, rr)
		up5, f5 := fs.elevated(&fs.hist5[s], r5, rr)
		fs.longE[s][fs.lpos], fs.longR[s][fs.lpos], fs.long5[s][fs.lpos] = e[s], r[s], e5[s]
		var le, lr, l5 int64
		for i := 0; i < longBuckets; i++ {
			le += fs.longE[s][i]
			lr += fs.longR[s][i]
			l5 += fs.long5[s][i]
		}
		upLE, fLE := fs.elevated(&fs.hist[s], le, lr)
		upL5, fL5 := fs.elevated(&fs.hist5[s], l5, lr)
		upE, fE = upE || upLE, max(fE, fLE)
		up5, f5 = up5 || upL5, max(f5, fL5)
		if upE {
			elevated++
		}
		switch {
		case upE || up5:
			if !fs.secActive[s] {
				fs.secActive[s], fs.secSince[s] = true, b0
				// The three buckets that raised it are its first.
				fs.secTotal[s] = re + r5 - e[s] - e5[s]
			}
			fs.secCalm[s] = b1
			fs.secFactor[s], fs.sec5xx[s] = max(fs.secFactor[s], fE), max(fs.sec5xx[s], f5)
		case fs.secActive[s] && b1-fs.secCalm[s] > int64(5*time.Minute):
			fs.secActive[s], fs.secFactor[s], fs.sec5xx[s], fs.secCode[s] = false, 0, 0, nil
		}
		if fs.secActive[s] {
			fs.secTotal[s] += e[s] + e5[s]
		}
		if fs.secActive[s] && windowDone {
			fs.secCode[s] = d.sectionCode(s, fs.secSince[s], b1)
		}
		// Only calm windows enter a section's baseline, so an incident
		// never becomes its own baseline.
		if windowDone && !fs.secActive[s] && !fs.active {
			fs.hist[s].add(re, rr)
			fs.hist5[s].add(r5, rr)
		}
	}
	fs.lpos = (fs.lpos + 1) % longBuckets
	fs.warm++
	switch {
	case elevated >= 3:
		if !fs.active {
			fs.active, fs.since = true, b0
		}
		fs.calm = b1
	case fs.active && b1-fs.calm > int64(5*time.Minute):
		fs.active = false
	}
}

// sectionActive says whether the section of wiki id is in an incident.
func (d *Detector) sectionActive(id wikimap.ID) bool {
	return d.fleet.secActive != nil && d.fleet.secActive[d.fleet.sectionOf[id]]
}

// wikiState is one wiki's anomaly detector.
type wikiState struct {
	s        [maxAlternatives]float64 // CUSUM of log-LR per alternative
	rho0     float64
	bx, by   float64 // EWMA baseline: wiki errors, others' errors
	brw, bro float64 // EWMA baseline: wiki requests, others' requests
	buckets  int     // buckets with excess since the CUSUM left 0
	onset    int64
	x, rw    int64 // since onset
	y, ro    int64

	// The access log's 5xx share, against the wiki's own baseline share.
	s5       [maxAlternatives]float64
	p5       float64 // null share
	b5x, b5r float64 // EWMA baseline: 5xx, requests
	buckets5 int
	onset5   int64
	x5, r5   int64 // since onset5

	incSince int64 // the section incident incX counts since
	incX     int64 // erroring requests and 5xx since then
}

const maxAlternatives = 4

// status5xxRhos are the 5xx-share jumps the access-log test looks for: an
// order of magnitude is the case it exists for.
var status5xxRhos = [maxAlternatives]float64{3, 10, 30, 50}

// min5xxShare floors the null 5xx share: below it a wiki's own baseline is
// too precise to be true of tomorrow.
const min5xxShare = 1e-4

var anomalyRhos = [maxAlternatives]float64{2, 3, 5, 10}

func (d *Detector) wikiAnomalyTest(b0, b1 int64, dc deployContext) {
	y, ro := d.controlCounts(d.trainB)
	if ro == 0 {
		return
	}
	n := d.wikis.Len()
	// Expected false alarms over a week across all wikis ≤ alpha: Lorden's
	// bound gives ARL ≥ exp(h) buckets for the CUSUM.
	weekBuckets := float64(7*24*time.Hour) / float64(d.bw)
	h := math.Log(float64(n) * weekBuckets / d.cfg.Alpha)
	testing := b0-d.dataStart >= int64(d.cfg.MinPrePeriod)
	a := 1 - math.Exp2(-float64(d.bw)/float64(time.Hour))
	for id := 1; id <= n; id++ {
		wid := wikimap.ID(id)
		if d.topo.cohort.has(wid) {
			continue
		}
		st := &d.wikiRate[id]
		x, rw := d.trainB[id].ErrorRequests, d.trainB[id].Requests
		if d.fleet.active {
			// A fleet-wide incident explains every wiki's excursion: none
			// may accumulate into an anomaly that fires once it ends.
			st.s, st.s5 = [maxAlternatives]float64{}, [maxAlternatives]float64{}
			st.buckets, st.onset, st.buckets5, st.onset5 = 0, 0, 0, 0
			st.x, st.rw, st.y, st.ro, st.x5, st.r5 = 0, 0, 0, 0, 0, 0
			continue
		}
		if d.sectionActive(wid) {
			// A section incident explains its wikis' excursions unless this
			// wiki makes most of it (one wiki can raise a small section).
			sec := d.fleet.sectionOf[id]
			if st.incSince != d.fleet.secSince[sec] {
				st.incSince, st.incX = d.fleet.secSince[sec], 0
			}
			st.incX += d.trainB[id].ErrorRequests + d.trainB[id].Status5xx
			if 2*st.incX < d.fleet.secTotal[sec] {
				st.s, st.s5 = [maxAlternatives]float64{}, [maxAlternatives]float64{}
				st.buckets, st.onset, st.buckets5, st.onset5 = 0, 0, 0, 0
				st.x, st.rw, st.y, st.ro, st.x5, st.r5 = 0, 0, 0, 0, 0, 0
				continue
			}
		}
		// The access-log test is held to at most one false alarm a week
		// over all wikis (not alpha): it blames nobody, and 5xx shares
		// jump by orders of magnitude when they matter.
		d.status5xxTest(wid, st, testing, a, h-math.Log(1/d.cfg.Alpha), b0, b1, dc)
		yo, rro := y-x, ro-rw
		if testing && st.bx > 0 && rw > 0 && rro > 0 && (x > 0 || st.buckets > 0) {
			// The baseline moves slowly: its confidence bound (a few µs
			// each) is refreshed about once a minute per wiki, staggered.
			// The EWMA's weights sum to 1/a buckets (about 86 min of
			// them): the bound is on that many buckets' counts.
			if st.rho0 == 0 || (x > 0 && (b0/d.bw+int64(id))%6 == 0) {
				_, hi := RateRatioCI(int64(math.Round(st.bx/a)), int64(math.Round(st.by/a)), st.brw/a, st.bro/a, 0.99)
				st.rho0 = math.Max(d.cfg.Margin, hi)
			}
			if !math.IsInf(st.rho0, 0) {
				s := float64(rw) / float64(rw+rro)
				p0 := st.rho0 * s / (st.rho0*s + 1 - s)
				top := 0.0
				for j, r := range anomalyRhos {
					q := st.rho0 * r * s / (st.rho0*r*s + 1 - s)
					inc := float64(x)*math.Log(q/p0) + float64(yo)*math.Log((1-q)/(1-p0))
					st.s[j] = math.Max(0, st.s[j]+inc)
					top = math.Max(top, st.s[j])
				}
				if top == 0 {
					st.buckets, st.onset, st.x, st.rw, st.y, st.ro = 0, 0, 0, 0, 0, 0
				} else {
					if st.onset == 0 {
						st.onset = b0
					}
					if float64(x) > p0*float64(x+yo) {
						st.buckets++
						d.touch(KindWikiAnomaly, "wiki:"+d.wikiName(wid), b1)
					}
					st.x, st.rw, st.y, st.ro = st.x+x, st.rw+rw, st.y+yo, st.ro+rro
					if top >= h && st.buckets >= d.cfg.MinBuckets {
						d.fireAnomaly(wid, st, top, h, b1, dc)
					}
				}
			}
		}
		// Baseline learns only from buckets that are not part of an excursion.
		// The EWMAs start at 0, so their ratio is unbiased from the first
		// bucket and sum/a is the weighted count the bound needs.
		if st.onset == 0 {
			st.bx += a * (float64(x) - st.bx)
			st.by += a * (float64(yo) - st.by)
			st.brw += a * (float64(rw) - st.brw)
			st.bro += a * (float64(rro) - st.bro)
		}
	}
}

// status5xxTest is the access-log half of wiki-anomaly: a CUSUM of the
// wiki's 5xx responses against its own baseline share (the 99% upper bound
// over the counts the EWMA weighs, never below margin × the point estimate
// nor min5xxShare), for 3× to 50× jumps; 5xx responses are distinct
// requests by construction. The threshold is the error test's.
func (d *Detector) status5xxTest(wid wikimap.ID, st *wikiState, testing bool, a, h float64, b0, b1 int64, dc deployContext) {
	x5, rw := d.trainB[wid].Status5xx, d.trainB[wid].Requests
	if testing && st.b5r > 0 && rw > 0 && (x5 > 0 || st.buckets5 > 0) {
		if st.p5 == 0 || (x5 > 0 && (b0/d.bw+int64(wid))%6 == 0) {
			n := st.b5r / a
			k := math.Round(st.b5x / a)
			hi := 1.0
			if n > k {
				hi = mathext.InvRegIncBeta(k+1, n-k, 0.99)
			}
			st.p5 = math.Max(math.Max(hi, d.cfg.Margin*k/n), min5xxShare)
		}
		p0 := st.p5
		if p0 < 0.5 {
			top := 0.0
			for j, r := range status5xxRhos {
				q := math.Min(0.9, p0*r)
				inc := float64(x5)*math.Log(q/p0) + float64(rw-x5)*math.Log((1-q)/(1-p0))
				st.s5[j] = math.Max(0, st.s5[j]+inc)
				top = math.Max(top, st.s5[j])
			}
			if top == 0 || (st.onset5 != 0 && b0-st.onset5 > int64(time.Hour)) {
				// An excursion that has not fired in an hour is a baseline
				// gone stale (it learns only outside excursions), not a jump:
				// start over and let the baseline catch up.
				if top != 0 {
					st.s5 = [maxAlternatives]float64{}
				}
				st.buckets5, st.onset5, st.x5, st.r5 = 0, 0, 0, 0
			} else {
				if st.onset5 == 0 {
					st.onset5 = b0
				}
				if float64(x5) > p0*float64(rw) {
					st.buckets5++
					d.touch(KindWikiAnomaly, "wiki:"+d.wikiName(wid), b1)
				}
				st.x5, st.r5 = st.x5+x5, st.r5+rw
				if top >= h && st.buckets5 >= d.cfg.MinBuckets && st.x5 >= int64(d.cfg.MinDistinct) {
					d.fire5xx(wid, st, top, h, b1, dc)
				}
			}
		}
	}
	if st.onset5 == 0 && !d.fleet.active && !d.sectionActive(wid) {
		st.b5x += a * (float64(x5) - st.b5x)
		st.b5r += a * (float64(rw) - st.b5r)
	}
}

// anomalyExplained says why a wiki's excursion since onset is not an
// anomaly of its own, "" when nothing explains it: a train deploy of its
// group within the attribution window (train-regression's business), a
// fleet-wide incident, or a section incident the wiki is only part of.
func (d *Detector) anomalyExplained(wid wikimap.ID, onset, b1 int64, x int64) string {
	w := d.wikis.Wiki(wid)
	for _, dep := range d.deploys {
		if dep.Scope == event.ScopeTrain && !dep.Initial && dep.Group == w.Group && dep.At <= b1 && onset-dep.At <= int64(d.cfg.Attribution) {
			return "train deploy"
		}
	}
	if d.fleet.active {
		return "fleet incident"
	}
	if d.sectionActive(wid) {
		// The wiki is the section incident only if it makes most of it.
		sum := d.trainSince(onset, b1)
		var sec int64
		for id := 1; id < len(sum); id++ {
			if d.fleet.sectionOf[id] == d.fleet.sectionOf[wid] {
				sec += sum[id].ErrorRequests + sum[id].Status5xx
			}
		}
		if 2*x < sec {
			return "section incident"
		}
	}
	return ""
}

func (d *Detector) fire5xx(wid wikimap.ID, st *wikiState, stat, h float64, b1 int64, dc deployContext) {
	w := d.wikis.Wiki(wid)
	if d.anomalyExplained(wid, st.onset5, b1, st.x5) != "" {
		return
	}
	share := float64(st.x5) / float64(max(st.r5, 1))
	usual := st.b5x / math.Max(st.b5r, 1)
	d.upsert(KindWikiAnomaly, "wiki:"+w.DBName, b1, true, func(f *Finding) {
		f.Wikis = []string{w.DBName}
		if f.StartedAt.IsZero() {
			f.StartedAt = ts(st.onset5)
		}
		f.Evidence = Evidence{
			Test:         "CUSUM of the wiki's 5xx responses (access log) against its own baseline share",
			CohortErrors: st.x5, CohortRequests: st.r5,
			BaselineRatio: st.p5, RateRatio: share / math.Max(st.p5, 1e-12), EValue: math.Exp(stat), Alpha: d.cfg.Alpha,
			Note: fmt.Sprintf("5xx share %.3g%% against a usual %.3g%% (tested against %.3g%%); log-likelihood %.1f over the threshold %.1f (≤ alpha false alarms a week over all wikis); no deploy of %s explains it",
				100*share, 100*usual, 100*st.p5, stat, h, w.Group),
		}
		f.Summary = fmt.Sprintf("%s answers %.2g%% of its requests with a 5xx since %s (usually %.2g%%; %d of %d requests), with no deploy to explain it (log-likelihood %.1f ≥ %.1f).",
			w.DBName, 100*share, ts(st.onset5).Format("15:04"), 100*usual, st.x5, st.r5, stat, h)
	})
	for j := range st.s5 {
		st.s5[j] = 0
	}
}

// explainedErrors counts a wiki's train-scope errors in [from, to) of the
// fingerprints of firing findings. A spillover onto a section raises every
// wiki of it; each such wiki is the spillover, already reported, not an
// anomaly of its own.
func (d *Detector) explainedErrors(wid wikimap.ID, from, to int64) int64 {
	var n int64
	for _, t := range d.findings {
		if t.f.State != StateFiring || t.f.Fingerprint == "" {
			continue
		}
		fp, err := strconv.ParseUint(t.f.Fingerprint, 16, 64)
		if err != nil {
			continue // not one of ours (fpHex); cannot happen
		}
		n += d.w.FingerprintCount(fp, wid, event.ScopeTrain, from, to)
	}
	return n
}

func (d *Detector) fireAnomaly(wid wikimap.ID, st *wikiState, stat, h float64, b1 int64, dc deployContext) {
	w := d.wikis.Wiki(wid)
	if d.anomalyExplained(wid, st.onset, b1, st.x) != "" {
		return
	}
	if 2*d.explainedErrors(wid, st.onset, b1) >= st.x {
		return // a firing finding's fingerprints on this wiki: that finding, seen on one wiki
	}
	obs := ratio(float64(st.x), float64(st.rw), float64(st.y), float64(st.ro))
	d.upsert(KindWikiAnomaly, "wiki:"+w.DBName, b1, true, func(f *Finding) {
		f.Wikis = []string{w.DBName}
		if f.StartedAt.IsZero() {
			f.StartedAt = ts(st.onset)
		}
		f.Evidence = Evidence{
			Test:         "CUSUM e-detector of the wiki's errors against all other wikis, rho0 from its own baseline",
			CohortErrors: st.x, CohortRequests: st.rw, ControlErrors: st.y, ControlRequests: st.ro,
			BaselineRatio: st.rho0, RateRatio: obs, EValue: math.Exp(stat), Alpha: d.cfg.Alpha,
			Note: fmt.Sprintf("log-likelihood %.1f over the threshold %.1f (≤ alpha false alarms a week over all wikis); no deploy of %s explains it", stat, h, w.Group),
		}
		usual := ratio(st.bx, st.brw, st.by, st.bro)
		rel := math.Inf(1)
		if usual > 0 {
			rel = obs / usual
		}
		f.Summary = fmt.Sprintf("%s errors at %s× its usual rate relative to the other wikis since %s (%d erroring requests in %d), with no deploy to explain it (log-likelihood %.1f ≥ %.1f).",
			w.DBName, fmtRatio(rel), ts(st.onset).Format("15:04"), st.x, st.rw, stat, h)
	})
	for j := range st.s {
		st.s[j] = 0 // reset after the alarm; the finding lives on through touch()
	}
}
