package detect

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/wikimedia/pretrain-detector/event"
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
	scopeTrain  int64 // train scope, on the cohort's DB sections (cohort's own train-scope occurrences included)
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
			cp += d.w.FingerprintCount(info.ID, id, event.ScopePretrain, b0, b1)
			ct += d.w.FingerprintCount(info.ID, id, event.ScopeTrain, b0, b1)
		}
		tr := d.w.FingerprintTotal(info.ID, event.ScopeTrain, b0, b1)
		pr := d.w.FingerprintTotal(info.ID, event.ScopePretrain, b0, b1)
		if cp+tr+pr == 0 {
			continue
		}
		st.cohortPre += cp
		st.cohortTrain += ct
		if tr > 0 {
			for sec, ok := range d.cohortSections {
				if ok {
					st.scopeTrain += d.w.FingerprintSection(info.ID, sec, event.ScopeTrain, b0, b1)
				}
			}
		}
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
			if tr > 0 && (info.Shared != event.SharedNone || st.cohortTrain > 0) {
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
		d.sinceBuf = d.w.SumWikis(event.ScopeTrain, from, to, d.sinceBuf[:0])
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
	d.upsert(KindPretrainRegression, keyCohort, b1, fire, func(f *Finding) {
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

// newTrainVersions returns the versions brought by train deploys after t.
func (d *Detector) newTrainVersions(after int64, before int64) map[string]window.Deploy {
	out := map[string]window.Deploy{}
	for _, dep := range d.deploys {
		if dep.Scope == event.ScopeTrain && !dep.Initial && dep.At > after && dep.At <= before {
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
	rs := &d.cohortRate
	jobrunner := st.cohortTrain > 0 && st.cohortTrain*2 >= st.train
	set, broad, setName := d.topo.byClass[info.Shared], d.topo.broad[info.Shared], d.topo.names[info.Shared]
	if jobrunner {
		set, broad, setName = d.topo.cohort, false, "the cohort served by train jobrunners"
	}
	key := spillKey(info.Shared, jobrunner)
	d.touch(KindSharedDataSpillover, key, b1)
	if rs.anchor != dep.At {
		return
	}
	rs.spillTested[info.ID] = true
	level := Bonferroni(d.cfg.Alpha, len(rs.spillTested))
	var held guards
	// Distinct requests, not lines: one request looping on an error is one.
	distinct := d.w.FingerprintDistinct(info.ID, event.ScopeTrain, dep.At, b1)
	n := min(st.train, distinct)
	pre := float64(dep.At - max(d.dataStart, d.w.Oldest()))
	post := float64(b1 - dep.At)
	pOnset := OnsetPValue(n, pre, post)
	if pOnset > math.Sqrt(level) {
		return // nothing close to significant: skip the costlier checks
	}
	undecided := ""

	// Versions decide train against Pretrain, whatever the order of the
	// deploys: an error carried only by versions a train deploy brought
	// within the attribution window before its onset is that deploy's.
	newer := d.newTrainVersions(info.FirstSeen-int64(d.cfg.Attribution), info.FirstSeen)
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
			undecided = "both the Pretrain deploy and a train deploy could explain the onset (errors carry old and new train versions)"
		}
	}
	held.add(!d.preCovered(dep.At), guard{kind: guardNoPrePeriod})
	if why := d.otherIncident(info.ID, set, b1); why != "" {
		undecided = why
	}

	// Where the errors land, and the requests of that place since the deploy.
	sum := d.trainSince(dep.At, b1)
	var rSet, rAll int64
	for id := 1; id < len(sum); id++ {
		rAll += sum[id].Requests
		if set.has(wikimap.ID(id)) {
			rSet += sum[id].Requests
		}
	}
	top, inSet := d.topWikis(info, event.ScopeTrain, dep.At, b1, set)
	if info.Shared == event.SharedCoreDB && !jobrunner {
		inSet = st.scopeTrain // the section count covers every wiki, not only the catalogue's first ones
	}
	if st.train > 0 && n < st.train {
		inSet = inSet * n / st.train // the lines there, scaled to distinct requests
	}
	inSet = min(inSet, n)
	out := n - inSet
	pConc := 1.0
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
		held.add(pConc > d.cfg.Alpha, guard{kind: guardNotConcentrated, where: setName, in: inSet, of: n, p: pConc})
	}

	// Code before place: the same fingerprint on the cohort's Pretrain-served
	// requests against the train-served requests it hit. A spillover spares
	// Pretrain-served traffic (the data is written by Pretrain code and read
	// by train code); an infrastructure fault hits both alike.
	var code CodeTest
	if jobrunner {
		// testwiki's own jobs, run by train code: its Pretrain-served
		// requests against its train-served jobs.
		code = codeTest("the cohort's train-served jobs", st.cohortPre, rs.rc, st.cohortTrain, max(1, d.cohortTrainRequests(dep.At, b1)), d.cfg.Margin)
		code.Verdict = VerdictPretrainSpared // the jobrunner path needs no comparison: only train code reads testwiki's jobs
	} else {
		rt, nt := rAll, n
		if !broad {
			rt, nt = rSet, inSet
		}
		code = codeTest("train-served wikis of "+setName, st.cohortPre, rs.rc, nt, rt, d.cfg.Margin)
		if infraFingerprint(info) && code.PSpared > d.cfg.Alpha && code.Verdict == VerdictPretrainSpared {
			// An infrastructure-looking error (connection, lag, timeout,
			// cache) needs the code test at alpha, not codeLevel.
			code.Verdict = VerdictUndetermined
		}
		switch code.Verdict {
		case VerdictPretrainSpared:
		case VerdictCodeAgnostic:
			undecided = "code-agnostic: Pretrain-served and train-served requests fail alike, an infrastructure fault, not code (" + code.String() + ")"
		default:
			if undecided == "" {
				undecided = "undetermined: " + code.String()
			}
		}
	}
	// A fleet-wide incident hides a spillover only if it is more than this
	// fingerprint: a code-specific signature (Pretrain-served spared) that
	// makes most of the fleet's excess is the spillover itself.
	held.add(d.fleet.active && !d.explainsFleet(info.ID, b1), guard{kind: guardFleet, beyond: true})
	held.burst(distinct, st.bucketsTr, &d.cfg)
	held.add(pOnset > level, guard{kind: guardEvidence, test: "onset", p: pOnset, level: level})
	cands := d.candidates(dep, &code, set, info.FirstSeen)
	if why, ok := otherFits(cands); ok && undecided == "" && code.Verdict != VerdictPretrainSpared {
		undecided = why
	}
	held.add(undecided != "", guard{kind: guardUndecided, reason: undecided})
	if held.only(guardUndecided) {
		d.undetermined(KindSharedDataSpillover, key, b1, undecided, cands)
	}
	fire := !held.blocks()
	pv := pOnset
	stat := fmt.Sprintf("onset p=%s", fmtP(pOnset))
	if !broad {
		pv = max(pOnset, pConc)
		stat += fmt.Sprintf(", concentration p=%s", fmtP(pConc))
	}
	if !jobrunner {
		stat += fmt.Sprintf(", code test p=%s", fmtP(code.PSpared))
	}
	d.upsert(KindSharedDataSpillover, key, b1, fire, func(f *Finding) {
		d.fillFingerprint(f, info, event.ScopeTrain, dep.At, b1)
		f.Wikis = wikisOf(top)
		f.StartedAt = ts(info.FirstSeen)
		f.Deploy = deployOf(dep)
		f.Evidence.Test = "new fingerprint on train-served wikis after a Pretrain deploy: onset test, concentration on the wikis sharing its data path, and the code test (Pretrain-served requests spared)"
		f.Evidence.CohortErrors, f.Evidence.CohortRequests = inSet, rSet
		f.Evidence.ControlErrors, f.Evidence.ControlRequests = out, rAll-rSet
		f.Evidence.RateRatio = ratio(float64(inSet), float64(rSet), float64(out), float64(rAll-rSet))
		f.Evidence.PValue, f.Evidence.Alpha, f.Evidence.Distinct = pv, level, distinct
		f.Evidence.TopWikis = capTop(top, 10)
		f.Evidence.Insufficient = !fire
		f.Evidence.Code, f.Evidence.Candidates, f.Evidence.Margin = &code, cands, winMargin(code, cands)
		where := "shared data (" + setName + ")"
		if jobrunner {
			where = "the cohort through the train jobrunners: data written by Pretrain code, read by train code"
			f.Evidence.Frame = strings.TrimSpace(f.Evidence.Frame + " jobrunner")
		}
		f.Evidence.Note = held.note("reached via " + where)
		f.Summary = fmt.Sprintf("Train-served errors on %d wikis (%s) began %s after the Pretrain deploy at %s, in %s, sparing Pretrain-served requests: “%s” (%d errors; %s).",
			len(f.Wikis), strings.Join(firstN(f.Wikis, 3), ", "), minutes(info.FirstSeen-dep.At), ts(dep.At).Format("15:04"),
			sharedName(info.Shared, jobrunner), short(f.NormalizedMessage, 100), n, stat)
	})
}

// spillKey is the key of a spillover finding: one per shared-data path, so
// that the fingerprints (new or raised) of one incident share a finding.
func spillKey(c event.SharedClass, jobrunner bool) string {
	if jobrunner {
		return "spill:jobrunner"
	}
	return "spill:" + c.String()
}

// cohortTrainRequests counts the cohort's train-scope requests over [from,
// to): its jobs on the train jobrunners.
func (d *Detector) cohortTrainRequests(from, to int64) int64 {
	sum := d.trainSince(from, to)
	var n int64
	for _, id := range d.cohortIDs {
		n += sum[id].Requests
	}
	return n
}

// explainsFleet says whether fingerprint fp makes at least half of the
// train fleet's erroring requests since the fleet-wide incident began: then
// the "incident" is this one error, whatever its cause.
func (d *Detector) explainsFleet(fp uint64, to int64) bool {
	from := d.fleet.since
	n := d.w.FingerprintDistinct(fp, event.ScopeTrain, from, to)
	d.sumT = d.w.SumWikis(event.ScopeTrain, from, to, d.sumT[:0])
	var all int64
	for id := 1; id < len(d.sumT); id++ {
		all += d.sumT[id].ErrorRequests
	}
	return all > 0 && 2*n >= all
}

// otherIncident says why a section incident on the wikis of set, or a
// fleet-wide one, explains a fingerprint better than a Pretrain deploy:
// when the incident is more than this fingerprint (other errors rose too,
// the infrastructure fingerprints are not flat). "" when none does.
func (d *Detector) otherIncident(fp uint64, set wikiSet, to int64) string {
	fs := &d.fleet
	for s := 0; s < fs.nsec; s++ {
		if !fs.secActive[s] {
			continue
		}
		touches := false
		for id := 1; id < len(set); id++ {
			if set[id] && int(fs.sectionOf[id]) == s {
				touches = true
				break
			}
		}
		if !touches {
			continue
		}
		from := fs.secSince[s]
		n := d.w.FingerprintSection(fp, d.w.SectionOf(d.firstWikiOf(s)), event.ScopeTrain, from, to)
		d.sumT = d.w.SumWikis(event.ScopeTrain, from, to, d.sumT[:0])
		var all int64
		for id := 1; id < len(d.sumT); id++ {
			if int(fs.sectionOf[id]) == s {
				all += d.sumT[id].ErrorRequests
			}
		}
		if 2*n < all {
			return fmt.Sprintf("a section incident on %s since %s is more than this error (%d of its %d erroring requests): infrastructure explains it as well as code",
				fs.names[s], ts(from).Format("15:04"), n, all)
		}
	}
	return ""
}

// firstWikiOf returns a wiki of fleet section s.
func (d *Detector) firstWikiOf(s int) wikimap.ID {
	for id := 1; id < len(d.fleet.sectionOf); id++ {
		if int(d.fleet.sectionOf[id]) == s {
			return wikimap.ID(id)
		}
	}
	return 0
}

// infraFingerprint says whether an error looks like a database fault's by
// its class, channel or message: a connection, lag, read-only, lock or
// deadlock error. Database incidents are the commonest confounder of a
// core-DB spillover, so blaming one of these on Pretrain takes the code
// test at alpha. Cache and timeout errors are left to the section-incident
// guard: a cache key written by Pretrain code is a real spillover path.
func infraFingerprint(info *window.FingerprintInfo) bool {
	for _, s := range []string{info.Class, info.Channel, info.Message} {
		l := strings.ToLower(s)
		for _, w := range infraWords {
			if strings.Contains(l, w) {
				return true
			}
		}
	}
	return false
}

var infraWords = []string{
	"dbconnection", "connection refused", "cannot access the database", "too many connections", "lost connection",
	"dbreadonly", "read-only", "readonly", "dbreplication", "replica lag", "lagged", "lock wait", "deadlock",
}

func sharedName(c event.SharedClass, jobrunner bool) string {
	if jobrunner && c == event.SharedNone {
		return "the job queue"
	}
	if c == event.SharedNone {
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
	distinctAll := d.w.FingerprintDistinct(info.ID, event.ScopeTrain, dep.At, b1)
	n := min(st.train, distinctAll)
	top, inSet := d.topWikis(info, event.ScopeTrain, dep.At, b1, set)
	if st.train > 0 && n < st.train {
		inSet = inSet * n / st.train // lines scaled to distinct requests
	}
	inSet = min(inSet, n)
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
	var held guards
	distinct := d.w.FingerprintDistinct(info.ID, event.ScopeTrain, dep.At, b1)
	held.burst(distinct, st.bucketsTr, &d.cfg)
	held.add(!d.preCovered(dep.At), guard{kind: guardNoPrePeriod})
	held.add(p > level, guard{kind: guardEvidence, p: p, level: level})
	fire := !held.blocks()
	gs := make([]string, 0, len(groups))
	for g := range groups {
		gs = append(gs, g)
	}
	sort.Strings(gs)
	d.upsert(KindTrainRegression, key, b1, fire, func(f *Finding) {
		d.fillFingerprint(f, info, event.ScopeTrain, dep.At, b1)
		f.Wikis = wikisOf(top)
		f.StartedAt = ts(info.FirstSeen)
		f.Deploy = deployOf(&dep)
		f.Evidence.Test = "new fingerprint carried only by the versions a train deploy brought: share of the deployed groups and onset"
		f.Evidence.CohortErrors, f.Evidence.ControlErrors = inSet, n-inSet
		f.Evidence.PValue, f.Evidence.Alpha, f.Evidence.Distinct = p, level, distinct
		f.Evidence.TopWikis = capTop(top, 10)
		f.Evidence.Insufficient = !fire
		f.Evidence.Note = held.note("the train's, not Pretrain's: only " + strings.Join(info.Versions, ", ") + " carries it")
		f.Summary = fmt.Sprintf("New error after the train deploy of %s (%s) at %s, on %d wikis: “%s” (%d errors; p=%s).",
			strings.Join(gs, ", "), dep.Version, ts(dep.At).Format("15:04"), len(f.Wikis), short(f.NormalizedMessage, 100), n, fmtP(p))
	})
}

// topWikis counts a fingerprint on the wikis the catalogue saw it on, and
// how many of its occurrences fell in set.
func (d *Detector) topWikis(info *window.FingerprintInfo, sc event.Scope, from, to int64, set wikiSet) (top []WikiCount, inSet int64) {
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

func (d *Detector) fillFingerprint(f *Finding, info *window.FingerprintInfo, sc event.Scope, from, to int64) {
	f.NormalizedMessage = info.Message
	f.ExceptionClass = info.Class
	f.Channel = info.Channel
	f.Fingerprint = fpHex(info.ID)
	f.Evidence.Exemplar = info.Exemplar
	f.Evidence.Versions = append([]string(nil), info.Versions...)
	f.Evidence.SharedData = info.Shared.String()
	f.Evidence.Frame = info.Frame
	if f.Evidence.Frame == "" && info.Shared != event.SharedNone {
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
