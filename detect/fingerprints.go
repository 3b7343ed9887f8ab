package detect

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// fpState accumulates one recent fingerprint's counts, bucket by bucket,
// from its first sighting. Only fingerprints young enough to be blamed on a
// deploy are tracked, so the cost follows new errors, not the catalogue.
type fpState struct {
	first       int64
	cohortPre   int64 // on cohort wikis, Pretrain scope
	cohortTrain int64 // on cohort wikis, train scope (train jobrunners)
	train       int64 // all wikis, train scope
	pre         int64 // all wikis, Pretrain scope
	bucketsPre  int   // buckets with cohort Pretrain-scope occurrences
	bucketsTr   int   // buckets with train-scope occurrences
	last        int64
}

func (d *Detector) fingerprintTests(b0, b1 int64, dc deployContext) {
	// The oldest deploy an onset here could still be blamed on.
	horizon := b1 - int64(d.cfg.Attribution)
	if dc.pretrain == nil && dc.trainLatest == nil {
		return
	}
	// Only fingerprints first seen within the attribution horizon can be
	// blamed on a deploy: the catalogue's older ones cost nothing here. The
	// window returns them ordered by first sighting, then id, so the
	// evaluation order (and Bonferroni's K) is deterministic.
	d.infos = d.w.FirstSeenAfter(horizon, d.infos[:0])
	for i := range d.infos {
		info := &d.infos[i]
		if info.LastSeen < b0 || info.FirstSeen >= b1 {
			continue
		}
		st := d.fps[info.ID]
		if st == nil {
			st = &fpState{first: info.FirstSeen}
			d.fps[info.ID] = st
		}
		var cp, ct int64
		for _, id := range d.cohortIDs {
			cp += d.w.FingerprintCount(info.ID, id, ingest.ScopePretrain, b0, b1)
			ct += d.w.FingerprintCount(info.ID, id, ingest.ScopeTrain, b0, b1)
		}
		tr := d.w.FingerprintTotal(info.ID, ingest.ScopeTrain, b0, b1)
		pr := d.w.FingerprintTotal(info.ID, ingest.ScopePretrain, b0, b1)
		if cp+tr+pr == 0 {
			continue
		}
		st.cohortPre += cp
		st.cohortTrain += ct
		st.train += tr
		st.pre += pr
		if cp > 0 {
			st.bucketsPre++
		}
		if tr > 0 {
			st.bucketsTr++
		}
		st.last = b1
		if dc.pretrain != nil && info.FirstSeen >= dc.pretrain.At {
			if cp > 0 {
				d.pretrainNewFingerprint(info, st, b1, dc)
			}
			if tr > 0 && (info.Shared != ingest.SharedNone || st.cohortTrain > 0) {
				d.spillover(info, st, b1, dc)
			}
		}
		if dc.trainLatest != nil && tr > 0 {
			d.trainRegression(info, st, b1, dc)
		}
	}
	// Forget fingerprints too old to blame on anything.
	for id, st := range d.fps {
		if st.first < horizon-int64(d.cfg.ResolveAfter) {
			delete(d.fps, id)
		}
	}
}

// trainSince returns the train scope's per-wiki counts over [from, to),
// computed once per bucket evaluation however many candidates ask.
func (d *Detector) trainSince(from, to int64) []window.Counts {
	if d.sinceFrom != from || d.sinceTo != to {
		d.sinceBuf = d.w.SumWikis(ingest.ScopeTrain, from, to, d.sinceBuf[:0])
		d.sinceFrom, d.sinceTo = from, to
	}
	return d.sinceBuf
}

func fpKey(id uint64) string { return "fp:" + strconv.FormatUint(id, 16) }

func fpHex(id uint64) string { return fmt.Sprintf("%016x", id) }

// preCovered says whether the window saw enough before a deploy for an
// error after it to be called new.
func (d *Detector) preCovered(at int64) bool {
	return at-max(d.dataStart, d.w.Oldest()) >= int64(d.cfg.MinPrePeriod)
}

func (d *Detector) pretrainNewFingerprint(info *window.FingerprintInfo, st *fpState, b1 int64, dc deployContext) {
	dep := dc.pretrain
	rs := &d.cohortRate
	if rs.anchor != dep.At || rs.rc == 0 {
		return
	}
	key := fpKey(info.ID)
	d.touch(KindPretrainRegression, key, b1)
	rs.newTested[info.ID] = true
	k, m := st.cohortPre, st.train+st.pre-st.cohortPre
	s := float64(rs.rc) / float64(rs.rc+rs.rk)
	p0 := d.cfg.Margin * s / (d.cfg.Margin*s + 1 - s)
	p := BinomialUpperTail(k, k+m, p0)
	level := Bonferroni(d.cfg.Alpha, len(rs.newTested))
	if p > math.Sqrt(level) {
		return
	}
	distinct := d.w.FingerprintDistinct(info.ID, ingest.ScopePretrain, dep.At, b1)
	var notes []string
	if !d.preCovered(dep.At) {
		notes = append(notes, "insufficient evidence: too little data before the deploy to call this fingerprint new")
	}
	if distinct < int64(d.cfg.MinDistinct) {
		notes = append(notes, fmt.Sprintf("burst guard: %d distinct requests of the %d needed", distinct, d.cfg.MinDistinct))
	}
	if st.bucketsPre < d.cfg.MinBuckets {
		notes = append(notes, fmt.Sprintf("burst guard: seen in %d of the %d buckets needed", st.bucketsPre, d.cfg.MinBuckets))
	}
	if p > level {
		need := CriticalCount(k+m, p0, level)
		notes = append(notes, fmt.Sprintf("insufficient evidence: p=%s above %s; about %d cohort occurrences would be significant", fmtP(p), fmtP(level), need))
	}
	fire := len(notes) == 0
	d.upsert(KindPretrainRegression, key, b1, fire, func(f *Finding) {
		d.fillFingerprint(f, info, ingest.ScopePretrain, dep.At, b1)
		f.Wikis = d.cohortNames()
		f.StartedAt = ts(info.FirstSeen)
		f.Deploy = deployOf(dep)
		f.Evidence.Test = "new fingerprint: exact binomial of the cohort's share of its occurrences against the cohort's request share"
		f.Evidence.CohortErrors, f.Evidence.ControlErrors = k, m
		f.Evidence.CohortRequests, f.Evidence.ControlRequests = rs.rc, rs.rk
		f.Evidence.BaselineRatio = d.cfg.Margin
		f.Evidence.PValue, f.Evidence.Alpha, f.Evidence.Distinct = p, level, distinct
		f.Evidence.Insufficient = !fire
		f.Evidence.Note = strings.Join(notes, "; ")
		f.Summary = fmt.Sprintf("New error on %s since the Pretrain deploy at %s: “%s” (%d occurrences on the cohort, %d elsewhere; p=%s).",
			strings.Join(f.Wikis, ", "), ts(dep.At).Format("15:04"), short(f.NormalizedMessage, 120), k, m, fmtP(p))
	})
}

// newTrainVersions returns the versions brought by train deploys after t.
func (d *Detector) newTrainVersions(after int64, before int64) map[string]window.Deploy {
	out := map[string]window.Deploy{}
	for _, dep := range d.deploys {
		if dep.Scope == ingest.ScopeTrain && !dep.Initial && dep.At > after && dep.At <= before {
			out[dep.Version] = dep
		}
	}
	return out
}

func (d *Detector) spillover(info *window.FingerprintInfo, st *fpState, b1 int64, dc deployContext) {
	dep := dc.pretrain
	if info.FirstSeen-dep.At > int64(d.cfg.Attribution) {
		return
	}
	key := fpKey(info.ID)
	d.touch(KindSharedDataSpillover, key, b1)
	rs := &d.cohortRate
	if rs.anchor != dep.At {
		return
	}
	rs.spillTested[info.ID] = true
	level := Bonferroni(d.cfg.Alpha, len(rs.spillTested))
	var notes []string
	n := st.train
	pre := float64(dep.At - max(d.dataStart, d.w.Oldest()))
	post := float64(b1 - dep.At)
	pOnset := OnsetPValue(n, pre, post)
	if pOnset > math.Sqrt(level) {
		return // nothing close to significant: skip the costlier checks
	}

	// Was a train deploy between the Pretrain deploy and the onset? The
	// versions the errors carry decide.
	newer := d.newTrainVersions(dep.At, info.FirstSeen)
	if len(newer) > 0 && len(info.Versions) > 0 {
		onlyNew, anyNew := true, false
		for _, v := range info.Versions {
			if _, ok := newer[v]; ok {
				anyNew = true
			} else {
				onlyNew = false
			}
		}
		if onlyNew {
			return // only the new train version carries it: train-regression's
		}
		if anyNew {
			notes = append(notes, "cannot decide: both the Pretrain deploy and a later train deploy could explain the onset (errors carry old and new train versions)")
		}
	}
	if !d.preCovered(dep.At) {
		notes = append(notes, "insufficient evidence: too little data before the deploy to call this fingerprint new")
	}

	// Where the errors land.
	jobrunner := st.cohortTrain > 0 && st.cohortTrain*2 >= st.train
	set, broad, setName := d.topo.byClass[info.Shared], d.topo.broad[info.Shared], d.topo.names[info.Shared]
	if jobrunner {
		set, broad, setName = d.topo.cohort, false, "the cohort served by train jobrunners"
	}
	top, inSet := d.topWikis(info, ingest.ScopeTrain, dep.At, b1, set)
	pConc := 1.0
	// The unlisted remainder (the catalogue keeps a bounded wiki list)
	// counts as outside the set: against concentration.
	out := n - inSet
	sum := d.trainSince(dep.At, b1)
	var rSet, rAll int64
	for id := 1; id < len(sum); id++ {
		rAll += sum[id].Requests
		if set.has(wikimap.ID(id)) {
			rSet += sum[id].Requests
		}
	}
	if !broad {
		s := 0.0
		if rAll > 0 {
			s = float64(rSet) / float64(rAll)
		}
		p0 := d.cfg.Margin * s / (d.cfg.Margin*s + 1 - s)
		if s == 0 {
			p0 = 0
		}
		pConc = BinomialUpperTail(inSet, inSet+out, p0)
		if pConc > d.cfg.Alpha {
			notes = append(notes, fmt.Sprintf("not concentrated on %s (%d of %d errors there; p=%s): a fleet-wide cause could explain it", setName, inSet, n, fmtP(pConc)))
		}
	} else if d.fleet.active {
		notes = append(notes, "a fleet-wide incident is under way and this data path is shared with every wiki: not blaming Pretrain")
	}
	distinct := d.w.FingerprintDistinct(info.ID, ingest.ScopeTrain, dep.At, b1)
	if distinct < int64(d.cfg.MinDistinct) {
		notes = append(notes, fmt.Sprintf("burst guard: %d distinct requests of the %d needed", distinct, d.cfg.MinDistinct))
	}
	if st.bucketsTr < d.cfg.MinBuckets {
		notes = append(notes, fmt.Sprintf("burst guard: seen in %d of the %d buckets needed", st.bucketsTr, d.cfg.MinBuckets))
	}
	if pOnset > level {
		notes = append(notes, fmt.Sprintf("insufficient evidence: onset p=%s above %s", fmtP(pOnset), fmtP(level)))
	}
	fire := len(notes) == 0
	d.upsert(KindSharedDataSpillover, key, b1, fire, func(f *Finding) {
		d.fillFingerprint(f, info, ingest.ScopeTrain, dep.At, b1)
		f.Wikis = wikisOf(top)
		f.StartedAt = ts(info.FirstSeen)
		f.Deploy = deployOf(dep)
		f.Evidence.Test = "new fingerprint on train-served wikis after a Pretrain deploy: onset test, plus concentration on the wikis sharing its data path"
		// Cohort: the train-served wikis sharing the data path (or the
		// cohort itself, through the jobrunners); control: the other wikis.
		f.Evidence.CohortErrors, f.Evidence.CohortRequests = inSet, rSet
		f.Evidence.ControlErrors, f.Evidence.ControlRequests = out, rAll-rSet
		f.Evidence.RateRatio = ratio(float64(inSet), float64(rSet), float64(out), float64(rAll-rSet))
		f.Evidence.PValue, f.Evidence.Alpha, f.Evidence.Distinct = max(pOnset, pConc), level, distinct
		f.Evidence.TopWikis = capTop(top, 10)
		f.Evidence.Insufficient = !fire
		where := "shared data (" + setName + ")"
		if jobrunner {
			where = "the cohort through the train jobrunners: data written by Pretrain code, read by train code"
			f.Evidence.Frame = strings.TrimSpace(f.Evidence.Frame + " jobrunner")
		}
		f.Evidence.Note = strings.Join(append([]string{"reached via " + where}, notes...), "; ")
		f.Summary = fmt.Sprintf("Train-served errors on %d wikis (%s) began %s after the Pretrain deploy at %s, in %s: “%s” (%d errors; p=%s).",
			len(f.Wikis), strings.Join(firstN(f.Wikis, 3), ", "), minutes(info.FirstSeen-dep.At), ts(dep.At).Format("15:04"),
			sharedName(info.Shared, jobrunner), short(f.NormalizedMessage, 100), n, fmtP(f.Evidence.PValue))
	})
}

func sharedName(c ingest.SharedClass, jobrunner bool) string {
	if jobrunner && c == ingest.SharedNone {
		return "the job queue"
	}
	if c == ingest.SharedNone {
		return "no shared-data class"
	}
	return c.String()
}

func (d *Detector) trainRegression(info *window.FingerprintInfo, st *fpState, b1 int64, dc deployContext) {
	// The train deploys that could explain an onset at FirstSeen.
	brought := d.newTrainVersions(info.FirstSeen-int64(d.cfg.Attribution), info.FirstSeen)
	if len(brought) == 0 || len(info.Versions) == 0 {
		return
	}
	var dep window.Deploy
	for _, v := range info.Versions {
		dv, ok := brought[v]
		if !ok {
			return // an old version carries it too: not this deploy's
		}
		if dv.At > dep.At {
			dep = dv
		}
	}
	key := fpKey(info.ID)
	d.touch(KindTrainRegression, key, b1)
	groups := map[string]bool{}
	for _, dv := range brought {
		groups[dv.Group] = true
	}
	sum := d.trainSince(dep.At, b1)
	var rG, rAll int64
	set := newWikiSet(d.wikis.Len())
	for id := 1; id < len(sum); id++ {
		rAll += sum[id].Requests
		if groups[d.wikis.Wiki(wikimap.ID(id)).Group] {
			rG += sum[id].Requests
			set[id] = true
		}
	}
	n := st.train
	top, inSet := d.topWikis(info, ingest.ScopeTrain, dep.At, b1, set)
	sG := 1.0
	if rAll > 0 {
		sG = float64(rG) / float64(rAll)
	}
	pShare := BinomialUpperTail(inSet, n, sG)
	pOnset := OnsetPValue(n, float64(dep.At-max(d.dataStart, d.w.Oldest())), float64(b1-dep.At))
	p := math.Min(1, 2*math.Min(pShare, pOnset))
	level := d.cfg.Alpha
	if p > math.Sqrt(level) {
		return
	}
	var notes []string
	distinct := d.w.FingerprintDistinct(info.ID, ingest.ScopeTrain, dep.At, b1)
	if distinct < int64(d.cfg.MinDistinct) {
		notes = append(notes, fmt.Sprintf("burst guard: %d distinct requests of the %d needed", distinct, d.cfg.MinDistinct))
	}
	if st.bucketsTr < d.cfg.MinBuckets {
		notes = append(notes, fmt.Sprintf("burst guard: seen in %d of the %d buckets needed", st.bucketsTr, d.cfg.MinBuckets))
	}
	if !d.preCovered(dep.At) {
		notes = append(notes, "insufficient evidence: too little data before the deploy to call this fingerprint new")
	}
	if p > level {
		notes = append(notes, fmt.Sprintf("insufficient evidence: p=%s above %s", fmtP(p), fmtP(level)))
	}
	fire := len(notes) == 0
	gs := make([]string, 0, len(groups))
	for g := range groups {
		gs = append(gs, g)
	}
	sort.Strings(gs)
	d.upsert(KindTrainRegression, key, b1, fire, func(f *Finding) {
		d.fillFingerprint(f, info, ingest.ScopeTrain, dep.At, b1)
		f.Wikis = wikisOf(top)
		f.StartedAt = ts(info.FirstSeen)
		f.Deploy = deployOf(&dep)
		f.Evidence.Test = "new fingerprint carried only by the versions a train deploy brought: share of the deployed groups and onset"
		f.Evidence.CohortErrors, f.Evidence.ControlErrors = inSet, n-inSet
		f.Evidence.PValue, f.Evidence.Alpha, f.Evidence.Distinct = p, level, distinct
		f.Evidence.TopWikis = capTop(top, 10)
		f.Evidence.Insufficient = !fire
		f.Evidence.Note = strings.Join(append([]string{"the train's, not Pretrain's: only " + strings.Join(info.Versions, ", ") + " carries it"}, notes...), "; ")
		f.Summary = fmt.Sprintf("New error after the train deploy of %s (%s) at %s, on %d wikis: “%s” (%d errors; p=%s).",
			strings.Join(gs, ", "), dep.Version, ts(dep.At).Format("15:04"), len(f.Wikis), short(f.NormalizedMessage, 100), n, fmtP(p))
	})
}

// topWikis counts a fingerprint on the wikis the catalogue saw it on, and
// how many of its occurrences fell in set.
func (d *Detector) topWikis(info *window.FingerprintInfo, sc ingest.Scope, from, to int64, set wikiSet) (top []WikiCount, inSet int64) {
	for _, id := range info.Wikis {
		c := d.w.FingerprintCount(info.ID, id, sc, from, to)
		if c == 0 {
			continue
		}
		if set.has(id) {
			inSet += c
		}
		top = append(top, WikiCount{Wiki: d.wikiName(id), Errors: c})
	}
	sort.Slice(top, func(i, j int) bool {
		if top[i].Errors != top[j].Errors {
			return top[i].Errors > top[j].Errors
		}
		return top[i].Wiki < top[j].Wiki
	})
	return top, inSet
}

func (d *Detector) fillFingerprint(f *Finding, info *window.FingerprintInfo, sc ingest.Scope, from, to int64) {
	f.NormalizedMessage = info.Message
	f.ExceptionClass = info.Class
	f.Channel = info.Channel
	f.Fingerprint = fpHex(info.ID)
	f.Evidence.Exemplar = info.Exemplar
	f.Evidence.Versions = append([]string(nil), info.Versions...)
	f.Evidence.SharedData = info.Shared.String()
	f.Evidence.Frame = info.Frame
	if f.Evidence.Frame == "" && info.Shared != ingest.SharedNone {
		f.Evidence.Frame = "channel " + info.Channel
	}
}

// short makes a one-line excerpt of at most about n bytes for a summary.
func short(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

func minutes(ns int64) string {
	m := float64(ns) / 60e9
	if m < 1 {
		return fmt.Sprintf("%.0fs", m*60)
	}
	return fmt.Sprintf("%.0f min", m)
}
