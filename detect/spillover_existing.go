package detect

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// Spillover through existing fingerprints. A deploy that makes an error the
// wikis already had more frequent is the common case of harm through shared
// data, and a new fingerprint is only the easy one. For each shared-data
// fingerprint first seen before the latest Pretrain deploy and seen since,
// the detector follows its train-served count after the deploy; once it is
// large enough it compares, per DB section, the section's before/after
// change with the other sections' (difference in differences), and the
// cohort's Pretrain-served requests with the section's train-served ones
// (the code test).

// existingState follows one existing shared fingerprint since a Pretrain
// deploy.
type existingState struct {
	anchor   int64  // the Pretrain deploy it is measured from
	base     uint64 // the catalogue's running train count when first seen after the anchor
	post     int64  // train-scope occurrences since then (the catalogue's count, lines)
	buckets  int    // buckets with occurrences since the anchor
	pre      int64  // occurrences in the pre-period; -1 until computed
	nextEval int64
	last     int64
}

// existingMinPost is how many occurrences since the deploy an existing
// fingerprint needs before its history is read: below it no test could
// reject, and reading costs a pass over the pre-period.
const existingMinPost = 10

func (d *Detector) existingSpillover(b0, b1 int64, dc deployContext) {
	dep := dc.pretrain
	if dep == nil || b1-dep.At > int64(d.cfg.Attribution) {
		if len(d.existing) > 0 {
			clear(d.existing)
		}
		return
	}
	rs := &d.cohortRate
	if rs.anchor != dep.At || !d.preCovered(dep.At) {
		return
	}
	// The catalogue's running counts gate the costly reads: only a
	// fingerprint seen existingMinPost times since the deploy is read from
	// the window (its count from its first sighting after the deploy on,
	// so the first bucket's occurrences are missed: it errs late, not early).
	d.ids = d.w.SharedSeenSince(b0, dep.At, d.ids[:0])
	for _, sc := range d.ids {
		id := sc.ID
		st := d.existing[id]
		if st == nil || st.anchor != dep.At {
			d.existing[id] = &existingState{anchor: dep.At, pre: -1, base: sc.Train, last: b1}
			continue
		}
		n := int64(sc.Train - st.base)
		if n <= st.post {
			continue
		}
		st.post = n
		st.buckets++
		st.last = b1
		if st.post < existingMinPost || b1 < st.nextEval {
			continue
		}
		if d.findingFiring(KindSharedDataSpillover, id) {
			d.touch(KindSharedDataSpillover, d.existingKey(id), b1)
			continue
		}
		st.nextEval = b1 + 6*d.bw // at most once a minute per fingerprint
		d.existingTest(id, st, dep, b1)
	}
	for id, st := range d.existing {
		if st.anchor != dep.At || (st.last != 0 && b1-st.last > int64(d.cfg.ResolveAfter)) {
			delete(d.existing, id)
		}
	}
}

// findingFiring says whether fingerprint id's spillover already fires.
func (d *Detector) findingFiring(kind Kind, id uint64) bool {
	info, ok := d.w.Fingerprint(id)
	if !ok {
		return false
	}
	t, ok := d.findings[findingID(kind, spillKey(info.Shared, false))]
	return ok && t.f.State == StateFiring && t.f.Fingerprint == fpHex(id)
}

func (d *Detector) existingKey(id uint64) string {
	info, _ := d.w.Fingerprint(id)
	return spillKey(info.Shared, false)
}

// secCount is a fingerprint's train-served errors and the requests of a
// DB section (or of several), after the deploy (1) and before it (0).
type secCount struct{ a1, a0, r1, r0 int64 }

// existingCase is one existing fingerprint's spillover test after a
// Pretrain deploy: what each step of the rule found. The steps share these
// numbers (the finding reports most of them), so they travel together
// rather than as a dozen arguments.
type existingCase struct {
	id   uint64
	st   *existingState
	dep  *window.Deploy
	b1   int64
	from int64 // the pre-period's start: the attribution window before the deploy, within the data
	info window.FingerprintInfo

	pOwn   float64 // own history: the fleet's rate of it after the deploy against before
	preReq int64   // the train fleet's requests in the pre-period

	secs   []string
	counts []secCount // per section (its requests without the cohort's wikis)
	tot    secCount   // over all sections

	best    int     // the section that rose most against the others (-1: none could be tested)
	bestP   float64 // its difference-in-differences p-value
	bestRho float64 // its null: margin × the other sections' change, at its upper bound
	level   float64

	code      CodeTest
	set       wikiSet // the best section's wikis, the cohort's left out
	cands     []Candidate
	distinct  int64 // distinct train-served requests logging it since the deploy
	undecided string
	held      guards
}

// existingTest tests an existing shared-data fingerprint that rose since
// the latest Pretrain deploy: its own history first, then which DB section
// rose beyond the others' change, then the code test on that section.
// Unlike a new fingerprint's, a case held back records no pending finding
// (status lists an undecided one).
func (d *Detector) existingTest(id uint64, st *existingState, dep *window.Deploy, b1 int64) {
	c := &existingCase{id: id, st: st, dep: dep, b1: b1}
	c.from = max(d.dataStart, d.w.Oldest(), dep.At-int64(d.cfg.Attribution))
	d.existingOwnHistory(c)
	if c.pOwn > math.Sqrt(d.cfg.Alpha) {
		return // nothing close to significant: skip the per-section reads
	}
	info, ok := d.w.Fingerprint(id)
	if !ok {
		return
	}
	c.info = info
	c.secs = d.w.Sections()
	d.sectionCounts(c)
	d.risenSection(c)
	if c.best < 0 {
		return
	}
	c.level = Bonferroni(d.cfg.Alpha, max(1, len(d.existing)))
	d.existingCodeTest(c)
	c.set = d.sectionWikis(c.best)
	c.cands = d.candidates(dep, &c.code, c.set, b1)
	d.existingGuards(c)
	key := spillKey(info.Shared, false)
	c.held.add(c.undecided != "", guard{kind: guardUndecided, reason: c.undecided})
	if c.held.blocks() {
		if c.held.only(guardUndecided) {
			d.undetermined(KindSharedDataSpillover, key, b1, c.undecided, c.cands)
		}
		return // held back: no pending finding either; status lists an undecided one
	}
	d.upsert(KindSharedDataSpillover, key, b1, nil, func(f *Finding) {
		d.fillExisting(f, c)
	})
}

// existingOwnHistory tests the fingerprint against its own history: the
// fleet's train-served rate of it per request (distinct requests, not
// lines) after the deploy against before. The pre-period's count is read
// once per deploy and kept in st.
func (d *Detector) existingOwnHistory(c *existingCase) {
	id, st, dep, b1 := c.id, c.st, c.dep, c.b1
	if st.pre < 0 {
		st.pre = d.w.FingerprintDistinct(id, event.ScopeTrain, c.from, dep.At)
	}
	post := d.w.FingerprintDistinct(id, event.ScopeTrain, dep.At, b1)
	postReq, preReq := d.trainRequests(dep.At, b1), d.trainRequests(c.from, dep.At)
	c.preReq = preReq
	c.pOwn = RateRatioPValue(post, st.pre, float64(postReq), float64(preReq), d.cfg.Margin, false)
}

// sectionCounts gathers, per DB section, the fingerprint's errors and the
// requests (the cohort's wikis left out) before and after the deploy.
// Sections are counted in lines; each period's count is scaled by its
// share of distinct requests, so a looping request weighs as one.
func (d *Detector) sectionCounts(c *existingCase) {
	id, dep, b1, from := c.id, c.dep, c.b1, c.from
	sumPost := d.trainSince(dep.At, b1)
	c.counts = make([]secCount, len(c.secs))
	d.sumT = d.w.SumWikis(event.ScopeTrain, from, dep.At, d.sumT[:0])
	for wid := 1; wid < len(sumPost); wid++ {
		s := d.w.SectionOf(wikimap.ID(wid))
		if d.topo.cohort.has(wikimap.ID(wid)) {
			continue
		}
		c.counts[s].r1 += sumPost[wid].Requests
		c.counts[s].r0 += d.sumT[wid].Requests
	}
	k1, k0 := d.distinctShare(id, dep.At, b1), d.distinctShare(id, from, dep.At)
	for s := range c.secs {
		c.counts[s].a1 = int64(math.Round(float64(d.w.FingerprintSection(id, s, event.ScopeTrain, dep.At, b1)) * k1))
		c.counts[s].a0 = int64(math.Round(float64(d.w.FingerprintSection(id, s, event.ScopeTrain, from, dep.At)) * k0))
		c.tot.a1, c.tot.a0, c.tot.r1, c.tot.r0 = c.tot.a1+c.counts[s].a1, c.tot.a0+c.counts[s].a0, c.tot.r1+c.counts[s].r1, c.tot.r0+c.counts[s].r0
	}
}

// distinctShare is the share of fingerprint id's train-served lines over
// [from, to) that are distinct requests (1 without lines).
func (d *Detector) distinctShare(id uint64, from, to int64) float64 {
	tot := d.w.FingerprintTotal(id, event.ScopeTrain, from, to)
	if tot == 0 {
		return 1
	}
	return math.Min(1, float64(d.w.FingerprintDistinct(id, event.ScopeTrain, from, to))/float64(tot))
}

// risenSection finds the section that rose most: per section, its change
// after the deploy against before, tested against margin × the upper bound
// of the other sections' change (difference in differences), which bounds
// what a fleet-wide trend explains. Sections with too few errors since,
// or without requests in either period, are not tested.
func (d *Detector) risenSection(c *existingCase) {
	c.best, c.bestP, c.bestRho = -1, 1.0, 0.0
	for s := range c.secs {
		sc := c.counts[s]
		if sc.a1 < existingMinPost || sc.r1 == 0 || sc.r0 == 0 {
			continue
		}
		if c.info.Shared == event.SharedCoreDB && !d.cohortSections[d.fleet.sectionIndexOf(c.secs[s])] {
			continue // a core-DB error reaches Pretrain's data only on the cohort's section
		}
		ob1, ob0, or1, or0 := c.tot.a1-sc.a1, c.tot.a0-sc.a0, c.tot.r1-sc.r1, c.tot.r0-sc.r0
		// The others' change: its upper 95% bound (unbounded when they
		// had none before and some after: then nothing stands out).
		hiO := d.cfg.Margin
		if or1 > 0 && or0 > 0 {
			_, hi := RateRatioCI(ob1, ob0, float64(or1), float64(or0), 0.9)
			hiO = math.Max(hiO, hi)
		}
		if math.IsInf(hiO, 0) || math.IsNaN(hiO) {
			continue
		}
		rho0 := hiO * d.cfg.Margin
		p := RateRatioPValue(sc.a1, sc.a0, float64(sc.r1), float64(sc.r0), rho0, false)
		if p < c.bestP {
			c.best, c.bestP, c.bestRho = s, p, rho0
		}
	}
}

// existingCodeTest is the code test on the best section: the cohort's
// Pretrain-served requests logging the fingerprint since the deploy (at
// most its distinct ones) against the section's train-served ones. A
// spillover spares Pretrain-served requests.
func (d *Detector) existingCodeTest(c *existingCase) {
	var k int64
	for _, cid := range d.cohortIDs {
		k += d.w.FingerprintCount(c.id, cid, event.ScopePretrain, c.dep.At, c.b1)
	}
	k = min(k, d.w.FingerprintDistinct(c.id, event.ScopePretrain, c.dep.At, c.b1))
	sc := c.counts[c.best]
	c.code = codeTest("train-served wikis of "+c.secs[c.best], k, d.cohortRate.rc, sc.a1, sc.r1, d.cfg.Margin)
}

// sectionWikis returns the wikis of section sec outside the cohort: where
// a spillover through the section's data lands.
func (d *Detector) sectionWikis(sec int) wikiSet {
	set := newWikiSet(d.wikis.Len())
	for wid := 1; wid <= d.wikis.Len(); wid++ {
		if d.w.SectionOf(wikimap.ID(wid)) == sec && !d.topo.cohort.has(wikimap.ID(wid)) {
			set[wid] = true
		}
	}
	return set
}

// existingGuards records the guards, in the rule's order: either test
// short of its level, a burst, a fleet-wide incident beyond this
// fingerprint; and why the finding is undecided, if it is: a section or
// fleet incident that is more than this error, else a code test that does
// not single Pretrain out, else another candidate the evidence fits.
func (d *Detector) existingGuards(c *existingCase) {
	id, b1 := c.id, c.b1
	c.held.add(c.bestP > c.level, guard{kind: guardEvidence, test: "difference in differences", p: c.bestP, level: c.level})
	c.held.add(c.pOwn > c.level, guard{kind: guardEvidence, test: "own-history", p: c.pOwn, level: c.level})
	c.distinct = d.w.FingerprintDistinct(id, event.ScopeTrain, c.dep.At, b1)
	c.held.add(c.distinct < int64(d.cfg.MinDistinct) || c.st.buckets < d.cfg.MinBuckets, guard{kind: guardBurst, distinct: c.distinct, buckets: c.st.buckets})
	c.held.add(d.fleet.active && !d.explainsFleet(id, b1), guard{kind: guardFleet, beyond: true})
	c.undecided = d.otherIncident(id, c.set, b1)
	if infraFingerprint(&c.info) && c.code.PSpared > d.cfg.Alpha && c.code.Verdict == VerdictPretrainSpared {
		c.code.Verdict = VerdictUndetermined // infrastructure-looking: the code test at alpha
	}
	switch {
	case c.undecided != "":
	case c.code.Verdict != VerdictPretrainSpared:
		c.undecided = c.code.Verdict + ": " + c.code.String()
	default:
		if why, ok := otherFits(c.cands); ok {
			c.undecided = why
		}
	}
}

// sectionTop counts fingerprint id on each wiki of set over [from, to),
// most errors first (then by name, for a stable order).
func (d *Detector) sectionTop(id uint64, set wikiSet, from, to int64) []WikiCount {
	var top []WikiCount
	for wid := 1; wid < len(set); wid++ {
		if !set[wid] {
			continue
		}
		if n := d.w.FingerprintCount(id, wikimap.ID(wid), event.ScopeTrain, from, to); n > 0 {
			top = append(top, WikiCount{Wiki: d.wikiName(wikimap.ID(wid)), Errors: n})
		}
	}
	sort.Slice(top, func(i, j int) bool {
		if top[i].Errors != top[j].Errors {
			return top[i].Errors > top[j].Errors
		}
		return top[i].Wiki < top[j].Wiki
	})
	return top
}

// fillExisting builds the finding from the case: the fingerprint, the
// section's wikis it hit, and the evidence of each test; the cohort is the
// section after the deploy, the control the same section before it.
func (d *Detector) fillExisting(f *Finding, c *existingCase) {
	info, dep, st := &c.info, c.dep, c.st
	sec, sc := c.secs[c.best], c.counts[c.best]
	d.fillFingerprint(f, info, event.ScopeTrain, dep.At, c.b1)
	top := d.sectionTop(c.id, c.set, dep.At, c.b1)
	f.Wikis = wikisOf(top)
	f.StartedAt = ts(dep.At)
	f.Deploy = deployOf(dep)
	f.Evidence.Test = "existing shared-data fingerprint rising after a Pretrain deploy: difference in differences (section × before/after against the other sections' change), own history, and the code test (Pretrain-served requests spared)"
	f.Evidence.CohortErrors, f.Evidence.CohortRequests = sc.a1, sc.r1
	f.Evidence.ControlErrors, f.Evidence.ControlRequests = sc.a0, sc.r0
	f.Evidence.BaselineErrors, f.Evidence.BaselineRequest = st.pre, c.preReq
	f.Evidence.BaselineRatio = c.bestRho
	f.Evidence.RateRatio = ratio(float64(sc.a1), float64(sc.r1), float64(sc.a0), float64(sc.r0))
	f.Evidence.PValue, f.Evidence.Alpha, f.Evidence.Distinct = c.bestP, c.level, c.distinct
	f.Evidence.TopWikis = capTop(top, 10)
	f.Evidence.Code, f.Evidence.Candidates, f.Evidence.Margin = &c.code, c.cands, winMargin(c.code, c.cands)
	f.Evidence.Note = fmt.Sprintf("reached via shared data (%s) on %s; cohort = %s after the deploy, control = the same before it; own-history p=%s", info.Shared, sec, sec, fmtP(c.pOwn))
	f.Summary = fmt.Sprintf("An existing error rose %s× on train-served %s wikis (%d wikis, e.g. %s) after the Pretrain deploy at %s, not on the other sections and sparing Pretrain-served requests, in %s: “%s” (%d errors since, %d before; difference in differences p=%s ≤ %s).",
		fmtRatio(f.Evidence.RateRatio), sec, len(f.Wikis), strings.Join(firstN(f.Wikis, 3), ", "), ts(dep.At).Format("15:04"),
		info.Shared, short(f.NormalizedMessage, 100), sc.a1, sc.a0, fmtP(c.bestP), fmtP(c.level))
}

// trainRequests counts the train fleet's requests over [from, to).
func (d *Detector) trainRequests(from, to int64) int64 {
	sum := d.trainSince(from, to)
	var n int64
	for id := 1; id < len(sum); id++ {
		n += sum[id].Requests
	}
	return n
}
