package detect

import (
	"fmt"
	"math"
	"strings"
	"time"

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
	d.upsert(KindPretrainRegression, keyCohort, b1, held, func(f *Finding) {
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

func (d *Detector) pretrainNewFingerprint(info *window.FingerprintInfo, st *fpState, b1 int64, dc deployContext) {
	dep := dc.pretrain
	rs := &d.cohortRate
	if rs.anchor != dep.At || rs.rc == 0 || rs.rk == 0 {
		return
	}
	d.touch(KindPretrainRegression, keyCohort, b1)
	rs.newTested[info.ID] = true
	// Code before place: the cohort's Pretrain-served occurrences (distinct
	// requests) against the train-served wikis that share its data (its DB
	// sections), not the whole fleet: an error of the section's database
	// hits both alike and is nobody's code.
	distinct := d.w.FingerprintDistinct(info.ID, event.ScopePretrain, dep.At, b1)
	k := min(st.cohortPre, distinct)
	m := st.scopeTrain + st.pre - st.cohortPre
	code := codeTest(d.scopeName(), k, rs.rc, m, rs.rk, d.cfg.Margin)
	p := code.PWorse
	level := Bonferroni(d.cfg.Alpha, len(rs.newTested))
	if p > math.Sqrt(level) {
		return
	}
	var held guards
	held.add(!d.preCovered(dep.At), guard{kind: guardNoPrePeriod})
	held.burst(distinct, st.bucketsPre, &d.cfg)
	held.add(d.fleet.active, guard{kind: guardFleet})
	held.add(p > level, guard{kind: guardEvidence, test: "code test", p: p, level: level})
	cands := d.candidates(dep, &code, d.scopeSet, b1)
	fire := !held.blocks()
	d.upsert(KindPretrainRegression, keyCohort, b1, held, func(f *Finding) {
		d.fillFingerprint(f, info, event.ScopePretrain, dep.At, b1)
		f.Wikis = d.cohortNames()
		f.StartedAt = ts(info.FirstSeen)
		f.Deploy = deployOf(dep)
		f.Evidence.Test = "new fingerprint: exact conditional binomial of its Pretrain-served occurrences (distinct requests) against the " + d.scopeName() + ", per request, null ratio = margin"
		f.Evidence.CohortErrors, f.Evidence.ControlErrors = k, m
		f.Evidence.CohortRequests, f.Evidence.ControlRequests = rs.rc, rs.rk
		f.Evidence.BaselineRatio = d.cfg.Margin
		f.Evidence.RateRatio = code.Ratio
		f.Evidence.PValue, f.Evidence.Alpha, f.Evidence.Distinct = p, level, distinct
		f.Evidence.Insufficient = !fire
		f.Evidence.Note = held.note()
		f.Evidence.Code, f.Evidence.Candidates, f.Evidence.Margin = &code, cands, winMargin(code, cands)
		f.Summary = fmt.Sprintf("New error on %s's Pretrain-served requests since the Pretrain deploy at %s: “%s” (%d requests on the cohort, %d occurrences on the %s; p=%s ≤ %s).",
			strings.Join(f.Wikis, ", "), ts(dep.At).Format("15:04"), short(f.NormalizedMessage, 120), k, m, d.scopeName(), fmtP(p), fmtP(level))
	})
}
