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
	d.upsert(KindTrainRegression, key, b1, held, func(f *Finding) {
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
