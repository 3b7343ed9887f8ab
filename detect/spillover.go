package detect

import (
	"fmt"
	"math"
	"strings"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

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
	d.upsert(KindSharedDataSpillover, key, b1, held, func(f *Finding) {
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

func sharedName(c event.SharedClass, jobrunner bool) string {
	if jobrunner && c == event.SharedNone {
		return "the job queue"
	}
	if c == event.SharedNone {
		return "no shared-data class"
	}
	return c.String()
}
