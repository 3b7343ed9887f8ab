package detect

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"gonum.org/v1/gonum/mathext"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

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

// wikiAnomalyTest runs wiki-anomaly's two CUSUMs on every wiki outside
// the cohort for bucket [b0, b1): its errors against the other wikis'
// (wikiErrorTest) and its 5xx share against its own (status5xxTest).
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
			st.resetExcursions()
			continue
		}
		if d.sectionExplains(id, st) {
			st.resetExcursions()
			continue
		}
		// The access-log test is held to at most one false alarm a week
		// over all wikis (not alpha): it blames nobody, and 5xx shares
		// jump by orders of magnitude when they matter.
		d.status5xxTest(wid, st, testing, a, h-math.Log(1/d.cfg.Alpha), b0, b1, dc)
		yo, rro := y-x, ro-rw
		if testing && st.bx > 0 && rw > 0 && rro > 0 && (x > 0 || st.buckets > 0) {
			d.wikiErrorTest(wid, st, x, rw, yo, rro, a, h, b0, b1, dc)
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

// resetExcursions forgets both CUSUMs' excursions (not the baselines): what
// an incident explains must not accumulate into an anomaly that fires once
// it ends.
func (st *wikiState) resetExcursions() {
	st.s, st.s5 = [maxAlternatives]float64{}, [maxAlternatives]float64{}
	st.buckets, st.onset, st.buckets5, st.onset5 = 0, 0, 0, 0
	st.x, st.rw, st.y, st.ro, st.x5, st.r5 = 0, 0, 0, 0, 0, 0
}

// sectionExplains says whether a section incident under way explains wiki
// id's excursion, counting the wiki's errors and 5xx since the incident
// began: it does unless this wiki makes most of it (one wiki can raise a
// small section, and that is an anomaly of its own).
func (d *Detector) sectionExplains(id int, st *wikiState) bool {
	if !d.sectionActive(wikimap.ID(id)) {
		return false
	}
	sec := d.fleet.sectionOf[id]
	if st.incSince != d.fleet.secSince[sec] {
		st.incSince, st.incX = d.fleet.secSince[sec], 0
	}
	st.incX += d.trainB[id].ErrorRequests + d.trainB[id].Status5xx
	return 2*st.incX < d.fleet.secTotal[sec]
}

// wikiErrorTest is the error half of wiki-anomaly for one wiki's bucket: a
// CUSUM of its erroring requests (x of rw) against the other wikis' (yo of
// rro), under a null ratio rho0 taken from its own baseline, so that a
// wiki that always errors more than the others is not an anomaly.
func (d *Detector) wikiErrorTest(wid wikimap.ID, st *wikiState, x, rw, yo, rro int64, a, h float64, b0, b1 int64, dc deployContext) {
	// The baseline moves slowly: its confidence bound (a few µs
	// each) is refreshed about once a minute per wiki, staggered.
	// The EWMA's weights sum to 1/a buckets (about 86 min of
	// them): the bound is on that many buckets' counts.
	if st.rho0 == 0 || (x > 0 && (b0/d.bw+int64(wid))%6 == 0) {
		_, hi := RateRatioCI(int64(math.Round(st.bx/a)), int64(math.Round(st.by/a)), st.brw/a, st.bro/a, 0.99)
		st.rho0 = math.Max(d.cfg.Margin, hi)
	}
	if math.IsInf(st.rho0, 0) {
		return // an unbounded null (the baseline has too little to bound it): nothing to test against
	}
	s := float64(rw) / float64(rw+rro)
	p0 := st.rho0 * s / (st.rho0*s + 1 - s)
	top := st.errorCUSUM(x, yo, s, p0)
	if top == 0 {
		st.buckets, st.onset, st.x, st.rw, st.y, st.ro = 0, 0, 0, 0, 0, 0
		return
	}
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

// errorCUSUM adds one bucket's log-likelihood ratio to the CUSUM of each
// alternative (the wiki's share of the errors at rho0 × r, against p0, with
// s its share of the requests) and returns the highest: several
// alternatives catch both a small rise that lasts and a large one.
func (st *wikiState) errorCUSUM(x, yo int64, s, p0 float64) float64 {
	top := 0.0
	for j, r := range anomalyRhos {
		q := st.rho0 * r * s / (st.rho0*r*s + 1 - s)
		inc := float64(x)*math.Log(q/p0) + float64(yo)*math.Log((1-q)/(1-p0))
		st.s[j] = math.Max(0, st.s[j]+inc)
		top = math.Max(top, st.s[j])
	}
	return top
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
	d.upsert(KindWikiAnomaly, "wiki:"+w.DBName, b1, nil, func(f *Finding) {
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
	d.upsert(KindWikiAnomaly, "wiki:"+w.DBName, b1, nil, func(f *Finding) {
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
