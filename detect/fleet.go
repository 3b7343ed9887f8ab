package detect

import (
	"math"
	"time"

	"github.com/montanaflynn/stats"

	"github.com/wikimedia/pretrain-detector/wikimap"
)

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

// sectionIndexOf returns a section's index, 0 when unknown.
func (fs *fleetState) sectionIndexOf(name string) int {
	for i, n := range fs.names {
		if n == name {
			return i
		}
	}
	return 0
}
