package detect

import (
	"fmt"
	"math"
	"strings"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// spillCase is one new fingerprint's spillover test after a Pretrain
// deploy: where its data path leads, and what each step of the rule found.
// The steps share these numbers (the finding reports most of them), so
// they travel together rather than as a dozen arguments.
type spillCase struct {
	info *window.FingerprintInfo
	st   *fpState
	dep  *window.Deploy
	b1   int64

	// The data path: the wikis that share the fingerprint's data with the
	// cohort (the cohort itself when the train jobrunners carry it), what
	// to call them, and whether they are most of the fleet (broad: no
	// concentration to test).
	jobrunner bool
	set       wikiSet
	broad     bool
	setName   string

	level    float64 // the onset test's level: alpha over the fingerprints tested since the deploy
	distinct int64   // distinct train-served requests logging it since the deploy
	n        int64   // its train-served errors since the deploy, in distinct requests
	pOnset   float64

	rSet, rAll int64       // train-served requests since the deploy: on the set, on the fleet
	top        []WikiCount // where it landed
	inSet, out int64       // its errors (distinct requests) on the set and elsewhere
	pConc      float64     // the concentration test's p-value (1 when broad)

	code      CodeTest
	cands     []Candidate
	undecided string // why the finding cannot blame Pretrain; "" when nothing stands in the way
	held      guards
}

// spillover tests a fingerprint new since the latest Pretrain deploy for a
// spillover through shared data: Pretrain code writes data that train code
// then fails on, so the errors land on train-served wikis but spare
// Pretrain-served requests.
func (d *Detector) spillover(info *window.FingerprintInfo, st *fpState, b1 int64, dc deployContext) {
	dep := dc.pretrain
	if info.FirstSeen-dep.At > int64(d.cfg.Attribution) {
		return
	}
	rs := &d.cohortRate
	c := d.spillPath(info, st, dep, b1)
	key := spillKey(info.Shared, c.jobrunner)
	d.touch(KindSharedDataSpillover, key, b1)
	if rs.anchor != dep.At {
		return
	}
	rs.spillTested[info.ID] = true
	c.level = Bonferroni(d.cfg.Alpha, len(rs.spillTested))
	d.spillOnset(c)
	if c.pOnset > math.Sqrt(c.level) {
		return // nothing close to significant: skip the costlier checks
	}

	// Versions decide train against Pretrain, whatever the order of the
	// deploys: an error carried only by versions a train deploy brought
	// within the attribution window before its onset is that deploy's.
	onlyNew, anyNew := d.newTrainVersionsCarry(info)
	if onlyNew {
		return // only the new train version carries it: train-regression's
	}
	if anyNew {
		c.undecided = "both the Pretrain deploy and a train deploy could explain the onset (errors carry old and new train versions)"
	}
	c.held.add(!d.preCovered(dep.At), guard{kind: guardNoPrePeriod})
	if why := d.otherIncident(info.ID, c.set, b1); why != "" {
		c.undecided = why
	}

	d.spillCounts(c)
	d.spillConcentration(c)
	d.spillCodeTest(c)
	d.spillGuards(c)
	if c.held.only(guardUndecided) {
		d.undetermined(KindSharedDataSpillover, key, b1, c.undecided, c.cands)
	}
	fire := !c.held.blocks()
	pv, stat := c.pValueAndStat()
	d.upsert(KindSharedDataSpillover, key, b1, c.held, func(f *Finding) {
		d.fillSpillover(f, c, fire, pv, stat)
	})
}

// spillPath starts a spillover case: the wikis the fingerprint's data path
// leads to, by its shared-data class. When at least half of its
// train-served errors are the cohort's (its jobs, which the train
// jobrunners run), the path is the job queue and leads to the cohort.
func (d *Detector) spillPath(info *window.FingerprintInfo, st *fpState, dep *window.Deploy, b1 int64) *spillCase {
	c := &spillCase{info: info, st: st, dep: dep, b1: b1}
	c.jobrunner = st.cohortTrain > 0 && st.cohortTrain*2 >= st.train
	c.set, c.broad, c.setName = d.topo.byClass[info.Shared], d.topo.broad[info.Shared], d.topo.names[info.Shared]
	if c.jobrunner {
		c.set, c.broad, c.setName = d.topo.cohort, false, "the cohort served by train jobrunners"
	}
	return c
}

// spillOnset runs the onset test: the fingerprint's train-served count
// since the deploy against none in the pre-period. It comes first because
// it is cheap, and the rule's other steps cost window reads.
func (d *Detector) spillOnset(c *spillCase) {
	// Distinct requests, not lines: one request looping on an error is one.
	c.distinct = d.w.FingerprintDistinct(c.info.ID, event.ScopeTrain, c.dep.At, c.b1)
	c.n = min(c.st.train, c.distinct)
	pre := float64(c.dep.At - max(d.dataStart, d.w.Oldest()))
	post := float64(c.b1 - c.dep.At)
	c.pOnset = OnsetPValue(c.n, pre, post)
}

// newTrainVersionsCarry says whether the versions a train deploy brought
// within the attribution window before the fingerprint's onset carry it:
// all of its versions (onlyNew: the train deploy's), or some (anyNew: the
// train deploy explains it as well as Pretrain). Both false when no such
// deploy happened or the errors carry no version.
func (d *Detector) newTrainVersionsCarry(info *window.FingerprintInfo) (onlyNew, anyNew bool) {
	newer := d.newTrainVersions(info.FirstSeen-int64(d.cfg.Attribution), info.FirstSeen)
	if len(newer) == 0 || len(info.Versions) == 0 {
		return false, false
	}
	onlyNew = true
	for _, v := range info.Versions {
		if _, ok := newer[v]; ok {
			anyNew = true
		} else {
			onlyNew = false
		}
	}
	return onlyNew, anyNew
}

// spillCounts gathers where the errors land and the requests of that
// place since the deploy: the set's and the fleet's train-served requests,
// the wikis it hit, and its errors on the set and elsewhere in distinct
// requests, as the onset test counts them.
func (d *Detector) spillCounts(c *spillCase) {
	sum := d.trainSince(c.dep.At, c.b1)
	for id := 1; id < len(sum); id++ {
		c.rAll += sum[id].Requests
		if c.set.has(wikimap.ID(id)) {
			c.rSet += sum[id].Requests
		}
	}
	var inSet int64
	c.top, inSet = d.topWikis(c.info, event.ScopeTrain, c.dep.At, c.b1, c.set)
	if c.info.Shared == event.SharedCoreDB && !c.jobrunner {
		inSet = c.st.scopeTrain // the section count covers every wiki, not only the catalogue's first ones
	}
	if c.st.train > 0 && c.n < c.st.train {
		inSet = inSet * c.n / c.st.train // the lines there, scaled to distinct requests
	}
	c.inSet = min(inSet, c.n)
	c.out = c.n - c.inSet
}

// spillConcentration tests whether the errors concentrate on the wikis the
// data path reaches, beyond margin × their share of the requests: a cause
// that hits the whole fleet would spread them by traffic. A broad path
// (most of the fleet) has nothing to concentrate on and is not tested.
func (d *Detector) spillConcentration(c *spillCase) {
	c.pConc = 1.0
	if c.broad {
		return
	}
	s := 0.0
	if c.rAll > 0 {
		s = float64(c.rSet) / float64(c.rAll)
	}
	p0 := d.cfg.Margin * s / (d.cfg.Margin*s + 1 - s)
	if s == 0 {
		p0 = 0
	}
	c.pConc = BinomialUpperTail(c.inSet, c.inSet+c.out, p0)
	c.held.add(c.pConc > d.cfg.Alpha, guard{kind: guardNotConcentrated, where: c.setName, in: c.inSet, of: c.n, p: c.pConc})
}

// spillCodeTest decides code before place: the same fingerprint on the
// cohort's Pretrain-served requests against the train-served requests it
// hit. A spillover spares Pretrain-served traffic (the data is written by
// Pretrain code and read by train code); an infrastructure fault hits both
// alike, and so leaves the finding undecided.
func (d *Detector) spillCodeTest(c *spillCase) {
	st, rc := c.st, d.cohortRate.rc
	if c.jobrunner {
		// testwiki's own jobs, run by train code: its Pretrain-served
		// requests against its train-served jobs.
		c.code = codeTest("the cohort's train-served jobs", st.cohortPre, rc, st.cohortTrain, max(1, d.cohortTrainRequests(c.dep.At, c.b1)), d.cfg.Margin)
		c.code.Verdict = VerdictPretrainSpared // the jobrunner path needs no comparison: only train code reads testwiki's jobs
		return
	}
	rt, nt := c.rAll, c.n
	if !c.broad {
		rt, nt = c.rSet, c.inSet
	}
	c.code = codeTest("train-served wikis of "+c.setName, st.cohortPre, rc, nt, rt, d.cfg.Margin)
	if infraFingerprint(c.info) && c.code.PSpared > d.cfg.Alpha && c.code.Verdict == VerdictPretrainSpared {
		// An infrastructure-looking error (connection, lag, timeout,
		// cache) needs the code test at alpha, not codeLevel.
		c.code.Verdict = VerdictUndetermined
	}
	switch c.code.Verdict {
	case VerdictPretrainSpared:
	case VerdictCodeAgnostic:
		c.undecided = "code-agnostic: Pretrain-served and train-served requests fail alike, an infrastructure fault, not code (" + c.code.String() + ")"
	default:
		if c.undecided == "" {
			c.undecided = "undetermined: " + c.code.String()
		}
	}
}

// spillGuards records the guards after the tests, in the rule's order: a
// fleet-wide incident, a burst, an onset test short of its level, and
// another cause the evidence fits as well (undecided), weighed among the
// candidates only when the code test did not single Pretrain out.
func (d *Detector) spillGuards(c *spillCase) {
	// A fleet-wide incident hides a spillover only if it is more than this
	// fingerprint: a code-specific signature (Pretrain-served spared) that
	// makes most of the fleet's excess is the spillover itself.
	c.held.add(d.fleet.active && !d.explainsFleet(c.info.ID, c.b1), guard{kind: guardFleet, beyond: true})
	c.held.burst(c.distinct, c.st.bucketsTr, &d.cfg)
	c.held.add(c.pOnset > c.level, guard{kind: guardEvidence, test: "onset", p: c.pOnset, level: c.level})
	c.cands = d.candidates(c.dep, &c.code, c.set, c.info.FirstSeen)
	if why, ok := otherFits(c.cands); ok && c.undecided == "" && c.code.Verdict != VerdictPretrainSpared {
		c.undecided = why
	}
	c.held.add(c.undecided != "", guard{kind: guardUndecided, reason: c.undecided})
}

// pValueAndStat returns the finding's p-value, the larger of the tests'
// (each must hold), and the tests' p-values as the summary states them;
// the concentration test only where it ran, the code test only where it
// compared (the jobrunner path does not).
func (c *spillCase) pValueAndStat() (float64, string) {
	pv := c.pOnset
	stat := fmt.Sprintf("onset p=%s", fmtP(c.pOnset))
	if !c.broad {
		pv = max(c.pOnset, c.pConc)
		stat += fmt.Sprintf(", concentration p=%s", fmtP(c.pConc))
	}
	if !c.jobrunner {
		stat += fmt.Sprintf(", code test p=%s", fmtP(c.code.PSpared))
	}
	return pv, stat
}

// fillSpillover builds the finding from the case: the fingerprint, where
// it landed, the evidence of each test and the guards that held it back.
func (d *Detector) fillSpillover(f *Finding, c *spillCase, fire bool, pv float64, stat string) {
	info, dep := c.info, c.dep
	d.fillFingerprint(f, info, event.ScopeTrain, dep.At, c.b1)
	f.Wikis = wikisOf(c.top)
	f.StartedAt = ts(info.FirstSeen)
	f.Deploy = deployOf(dep)
	f.Evidence.Test = "new fingerprint on train-served wikis after a Pretrain deploy: onset test, concentration on the wikis sharing its data path, and the code test (Pretrain-served requests spared)"
	f.Evidence.CohortErrors, f.Evidence.CohortRequests = c.inSet, c.rSet
	f.Evidence.ControlErrors, f.Evidence.ControlRequests = c.out, c.rAll-c.rSet
	f.Evidence.RateRatio = ratio(float64(c.inSet), float64(c.rSet), float64(c.out), float64(c.rAll-c.rSet))
	f.Evidence.PValue, f.Evidence.Alpha, f.Evidence.Distinct = pv, c.level, c.distinct
	f.Evidence.TopWikis = capTop(c.top, 10)
	f.Evidence.Insufficient = !fire
	f.Evidence.Code, f.Evidence.Candidates, f.Evidence.Margin = &c.code, c.cands, winMargin(c.code, c.cands)
	where := "shared data (" + c.setName + ")"
	if c.jobrunner {
		where = "the cohort through the train jobrunners: data written by Pretrain code, read by train code"
		f.Evidence.Frame = strings.TrimSpace(f.Evidence.Frame + " jobrunner")
	}
	f.Evidence.Note = c.held.note("reached via " + where)
	f.Summary = fmt.Sprintf("Train-served errors on %d wikis (%s) began %s after the Pretrain deploy at %s, in %s, sparing Pretrain-served requests: “%s” (%d errors; %s).",
		len(f.Wikis), strings.Join(firstN(f.Wikis, 3), ", "), minutes(info.FirstSeen-dep.At), ts(dep.At).Format("15:04"),
		sharedName(info.Shared, c.jobrunner), short(f.NormalizedMessage, 100), c.n, stat)
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

func sharedName(c event.SharedClass, jobrunner bool) string {
	if jobrunner && c == event.SharedNone {
		return "the job queue"
	}
	if c == event.SharedNone {
		return "no shared-data class"
	}
	return c.String()
}
