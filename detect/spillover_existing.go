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

func (d *Detector) existingTest(id uint64, st *existingState, dep *window.Deploy, b1 int64) {
	from := max(d.dataStart, d.w.Oldest(), dep.At-int64(d.cfg.Attribution))
	if st.pre < 0 {
		st.pre = d.w.FingerprintDistinct(id, event.ScopeTrain, from, dep.At)
	}
	// Own history first: the fleet's train-served rate of it per request
	// (distinct requests, not lines) after the deploy against before.
	post := d.w.FingerprintDistinct(id, event.ScopeTrain, dep.At, b1)
	postReq, preReq := d.trainRequests(dep.At, b1), d.trainRequests(from, dep.At)
	pOwn := RateRatioPValue(post, st.pre, float64(postReq), float64(preReq), d.cfg.Margin, false)
	if pOwn > math.Sqrt(d.cfg.Alpha) {
		return
	}
	info, ok := d.w.Fingerprint(id)
	if !ok {
		return
	}
	secs := d.w.Sections()
	// Which sections rose: per section, after against before, and the other
	// sections' change bounds what a fleet-wide trend explains.
	sumPost := d.trainSince(dep.At, b1)
	type secCount struct{ a1, a0, r1, r0 int64 }
	counts := make([]secCount, len(secs))
	d.sumT = d.w.SumWikis(event.ScopeTrain, from, dep.At, d.sumT[:0])
	for wid := 1; wid < len(sumPost); wid++ {
		s := d.w.SectionOf(wikimap.ID(wid))
		if d.topo.cohort.has(wikimap.ID(wid)) {
			continue
		}
		counts[s].r1 += sumPost[wid].Requests
		counts[s].r0 += d.sumT[wid].Requests
	}
	// Sections are counted in lines; scaled by each period's share of
	// distinct requests, so a looping request weighs as one.
	scale := func(from, to int64) float64 {
		tot := d.w.FingerprintTotal(id, event.ScopeTrain, from, to)
		if tot == 0 {
			return 1
		}
		return math.Min(1, float64(d.w.FingerprintDistinct(id, event.ScopeTrain, from, to))/float64(tot))
	}
	k1, k0 := scale(dep.At, b1), scale(from, dep.At)
	var tot secCount
	for s := range secs {
		counts[s].a1 = int64(math.Round(float64(d.w.FingerprintSection(id, s, event.ScopeTrain, dep.At, b1)) * k1))
		counts[s].a0 = int64(math.Round(float64(d.w.FingerprintSection(id, s, event.ScopeTrain, from, dep.At)) * k0))
		tot.a1, tot.a0, tot.r1, tot.r0 = tot.a1+counts[s].a1, tot.a0+counts[s].a0, tot.r1+counts[s].r1, tot.r0+counts[s].r0
	}
	best, bestP, bestRho := -1, 1.0, 0.0
	for s := range secs {
		c := counts[s]
		if c.a1 < existingMinPost || c.r1 == 0 || c.r0 == 0 {
			continue
		}
		if info.Shared == event.SharedCoreDB && !d.cohortSections[d.fleet.sectionIndexOf(secs[s])] {
			continue // a core-DB error reaches Pretrain's data only on the cohort's section
		}
		ob1, ob0, or1, or0 := tot.a1-c.a1, tot.a0-c.a0, tot.r1-c.r1, tot.r0-c.r0
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
		p := RateRatioPValue(c.a1, c.a0, float64(c.r1), float64(c.r0), rho0, false)
		if p < bestP {
			best, bestP, bestRho = s, p, rho0
		}
	}
	if best < 0 {
		return
	}
	level := Bonferroni(d.cfg.Alpha, max(1, len(d.existing)))
	sec := secs[best]
	c := counts[best]
	// Code test: the cohort's Pretrain-served requests logging it since the
	// deploy against the section's train-served ones.
	var k int64
	for _, cid := range d.cohortIDs {
		k += d.w.FingerprintCount(id, cid, event.ScopePretrain, dep.At, b1)
	}
	k = min(k, d.w.FingerprintDistinct(id, event.ScopePretrain, dep.At, b1))
	code := codeTest("train-served wikis of "+sec, k, d.cohortRate.rc, c.a1, c.r1, d.cfg.Margin)
	set := newWikiSet(d.wikis.Len())
	for wid := 1; wid <= d.wikis.Len(); wid++ {
		if d.w.SectionOf(wikimap.ID(wid)) == best && !d.topo.cohort.has(wikimap.ID(wid)) {
			set[wid] = true
		}
	}
	cands := d.candidates(dep, &code, set, b1)
	var held guards
	held.add(bestP > level, guard{kind: guardEvidence, test: "difference in differences", p: bestP, level: level})
	held.add(pOwn > level, guard{kind: guardEvidence, test: "own-history", p: pOwn, level: level})
	distinct := d.w.FingerprintDistinct(id, event.ScopeTrain, dep.At, b1)
	held.add(distinct < int64(d.cfg.MinDistinct) || st.buckets < d.cfg.MinBuckets, guard{kind: guardBurst, distinct: distinct, buckets: st.buckets})
	held.add(d.fleet.active && !d.explainsFleet(id, b1), guard{kind: guardFleet, beyond: true})
	undecided := d.otherIncident(id, set, b1)
	if infraFingerprint(&info) && code.PSpared > d.cfg.Alpha && code.Verdict == VerdictPretrainSpared {
		code.Verdict = VerdictUndetermined // infrastructure-looking: the code test at alpha
	}
	if undecided != "" {
	} else if code.Verdict != VerdictPretrainSpared {
		undecided = code.Verdict + ": " + code.String()
	} else if why, ok := otherFits(cands); ok {
		undecided = why
	}
	key := spillKey(info.Shared, false)
	held.add(undecided != "", guard{kind: guardUndecided, reason: undecided})
	if held.blocks() {
		if held.only(guardUndecided) {
			d.undetermined(KindSharedDataSpillover, key, b1, undecided, cands)
		}
		return // held back: no pending finding either; status lists an undecided one
	}
	d.upsert(KindSharedDataSpillover, key, b1, nil, func(f *Finding) {
		d.fillFingerprint(f, &info, event.ScopeTrain, dep.At, b1)
		var top []WikiCount
		for wid := 1; wid < len(set); wid++ {
			if !set[wid] {
				continue
			}
			if n := d.w.FingerprintCount(id, wikimap.ID(wid), event.ScopeTrain, dep.At, b1); n > 0 {
				top = append(top, WikiCount{Wiki: d.wikiName(wikimap.ID(wid)), Errors: n})
			}
		}
		sort.Slice(top, func(i, j int) bool {
			if top[i].Errors != top[j].Errors {
				return top[i].Errors > top[j].Errors
			}
			return top[i].Wiki < top[j].Wiki
		})
		f.Wikis = wikisOf(top)
		f.StartedAt = ts(dep.At)
		f.Deploy = deployOf(dep)
		f.Evidence.Test = "existing shared-data fingerprint rising after a Pretrain deploy: difference in differences (section × before/after against the other sections' change), own history, and the code test (Pretrain-served requests spared)"
		f.Evidence.CohortErrors, f.Evidence.CohortRequests = c.a1, c.r1
		f.Evidence.ControlErrors, f.Evidence.ControlRequests = c.a0, c.r0
		f.Evidence.BaselineErrors, f.Evidence.BaselineRequest = st.pre, preReq
		f.Evidence.BaselineRatio = bestRho
		f.Evidence.RateRatio = ratio(float64(c.a1), float64(c.r1), float64(c.a0), float64(c.r0))
		f.Evidence.PValue, f.Evidence.Alpha, f.Evidence.Distinct = bestP, level, distinct
		f.Evidence.TopWikis = capTop(top, 10)
		f.Evidence.Code, f.Evidence.Candidates, f.Evidence.Margin = &code, cands, winMargin(code, cands)
		f.Evidence.Note = fmt.Sprintf("reached via shared data (%s) on %s; cohort = %s after the deploy, control = the same before it; own-history p=%s", info.Shared, sec, sec, fmtP(pOwn))
		f.Summary = fmt.Sprintf("An existing error rose %s× on train-served %s wikis (%d wikis, e.g. %s) after the Pretrain deploy at %s, not on the other sections and sparing Pretrain-served requests, in %s: “%s” (%d errors since, %d before; difference in differences p=%s ≤ %s).",
			fmtRatio(f.Evidence.RateRatio), sec, len(f.Wikis), strings.Join(firstN(f.Wikis, 3), ", "), ts(dep.At).Format("15:04"),
			info.Shared, short(f.NormalizedMessage, 100), c.a1, c.a0, fmtP(bestP), fmtP(level))
	})
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
