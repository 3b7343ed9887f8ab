package pipeline

import (
	"strconv"
	"time"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// RatePlot is a finding's cohort and control, minute by minute, around its
// onset: what the report plots. It is recorded while the replay runs, as
// the window holds only its last ring length.
type RatePlot struct {
	Start time.Time     // first minute
	Step  time.Duration // one minute
	// Cohort are the finding's wikis, counted in CohortScope ("pretrain"
	// for the kinds that blame Pretrain-served traffic, else "train"); the
	// control is every other wiki on the train scope.
	Cohort      []string
	CohortScope string
	// Fingerprint is the finding's error (hex), counted on the cohort;
	// empty for findings about a rate.
	Fingerprint string
	Points      []RatePoint
}

// RatePoint is one minute.
type RatePoint struct {
	CohortRequests, CohortErrors   int64
	ControlRequests, ControlErrors int64
	FingerprintErrors              int64 // the finding's error on the cohort
}

// plotRecorder fills RatePlots from the window after every evaluation, up
// to the watermark: minutes before the onset from the ring when the finding
// fires, later minutes as they close.
type plotRecorder struct {
	store      *window.Store
	wikis      *wikimap.Map
	start, end int64 // the replay's range, ns
	plots      map[string]*plotState

	minute     int64 // the minute cached in train and pre; -1 when none
	train, pre []window.Counts
}

type plotState struct {
	RatePlot
	ids       []wikimap.ID
	scope     event.Scope
	fp        uint64
	next, end int64 // next minute to fill, and the end of the plot, ns
}

const (
	plotStep   = int64(time.Minute)
	plotBefore = 30 * time.Minute // before the onset
	plotAfter  = 30 * time.Minute // after the detection
)

func newPlotRecorder(r *Replay) *plotRecorder {
	return &plotRecorder{
		store: r.store, wikis: r.opts.Wikis, start: r.Start().UnixNano(), end: r.opts.To.UnixNano(),
		plots: map[string]*plotState{}, minute: -1,
	}
}

// add starts the plot of a finding that just fired.
func (p *plotRecorder) add(f detect.Finding) {
	if _, ok := p.plots[f.ID]; ok {
		return
	}
	st := &plotState{scope: event.ScopeTrain}
	if f.Kind == detect.KindPretrainRegression || f.Kind == detect.KindPretrainLeak {
		st.scope = event.ScopePretrain
	}
	for _, name := range f.Wikis {
		if id := p.wikis.ByNameString(name); id != 0 {
			st.ids = append(st.ids, id)
			st.Cohort = append(st.Cohort, name)
		}
	}
	st.CohortScope = st.scope.String()
	if f.Fingerprint != "" {
		if fp, err := strconv.ParseUint(f.Fingerprint, 16, 64); err == nil {
			st.fp, st.Fingerprint = fp, f.Fingerprint
		}
	}
	onset := f.StartedAt
	if onset.IsZero() || onset.After(f.DetectedAt) {
		onset = f.DetectedAt
	}
	first := max(onset.Add(-plotBefore).UnixNano(), p.store.Oldest(), p.start)
	st.next = ceilTo(first, plotStep)
	st.end = min(floorDiv(f.DetectedAt.Add(plotAfter).UnixNano(), plotStep)*plotStep+plotStep, ceilTo(p.end, plotStep))
	st.Start, st.Step = time.Unix(0, st.next).UTC(), time.Minute
	p.plots[f.ID] = st
}

// fill adds every minute that closed at or before wm.
func (p *plotRecorder) fill(wm int64) {
	p.minute = -1 // events arrived since the last call
	for _, st := range p.plots {
		for st.next < st.end && st.next+plotStep <= wm {
			st.Points = append(st.Points, p.point(st, st.next))
			st.next += plotStep
		}
	}
}

func (p *plotRecorder) point(st *plotState, m0 int64) RatePoint {
	m1 := m0 + plotStep
	if p.minute != m0 {
		p.train = p.store.SumWikis(event.ScopeTrain, m0, m1, p.train)
		p.pre = p.store.SumWikis(event.ScopePretrain, m0, m1, p.pre)
		p.minute = m0
	}
	var pt RatePoint
	for w := 1; w < len(p.train); w++ {
		pt.ControlRequests += p.train[w].Requests
		pt.ControlErrors += p.train[w].Errors
	}
	cohort := p.train
	if st.scope == event.ScopePretrain {
		cohort = p.pre
	}
	for _, id := range st.ids {
		pt.CohortRequests += cohort[id].Requests
		pt.CohortErrors += cohort[id].Errors
		pt.ControlRequests -= p.train[id].Requests
		pt.ControlErrors -= p.train[id].Errors
		if st.Fingerprint != "" {
			pt.FingerprintErrors += p.store.FingerprintCount(st.fp, id, st.scope, m0, m1)
		}
	}
	return pt
}

// result returns the plots by finding ID.
func (p *plotRecorder) result() map[string]*RatePlot {
	if p == nil {
		return nil
	}
	out := make(map[string]*RatePlot, len(p.plots))
	for id, st := range p.plots {
		rp := st.RatePlot
		out[id] = &rp
	}
	return out
}

func ceilTo(t, step int64) int64 { return -floorDiv(-t, step) * step }
