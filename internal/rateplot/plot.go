// Package rateplot records a finding's plot (render.Plot: cohort against
// control per minute, from half an hour before its onset to half an hour
// after its detection) from the window: the replay while it runs (Recorder), the daemon
// from what the window still holds (Live).
package rateplot

import (
	"strconv"
	"time"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/render"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// Recorder fills RatePlots from the window after every evaluation, up
// to the watermark: minutes before the onset from the ring when the finding
// fires, later minutes as they close.
type Recorder struct {
	store      *window.Store
	wikis      *wikimap.Map
	start, end int64 // the replay's range, ns
	plots      map[string]*plotState

	minute     int64 // the minute cached in train and pre; -1 when none
	train, pre []window.Counts
}

type plotState struct {
	render.Plot
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

// NewRecorder records plots from store for a run over [start, end) (Unix
// ns): no plot reaches outside it.
func NewRecorder(store *window.Store, wikis *wikimap.Map, start, end int64) *Recorder {
	return &Recorder{store: store, wikis: wikis, start: start, end: end, plots: map[string]*plotState{}, minute: -1}
}

// Add starts the plot of a finding that just fired.
func (p *Recorder) Add(f detect.Finding) {
	if _, ok := p.plots[f.ID]; ok {
		return
	}
	st := &plotState{scope: event.ScopeTrain} // a kind this build does not know: train-served
	if facts, ok := f.Kind.Facts(); ok {
		st.scope = facts.PlotScope
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

// Fill adds every minute that closed at or before wm.
func (p *Recorder) Fill(wm int64) {
	p.minute = -1 // events arrived since the last call
	for _, st := range p.plots {
		for st.next < st.end && st.next+plotStep <= wm {
			st.Points = append(st.Points, p.point(st, st.next))
			st.next += plotStep
		}
	}
}

func (p *Recorder) point(st *plotState, m0 int64) render.Point {
	m1 := m0 + plotStep
	if p.minute != m0 {
		p.train = p.store.SumWikis(event.ScopeTrain, m0, m1, p.train)
		p.pre = p.store.SumWikis(event.ScopePretrain, m0, m1, p.pre)
		p.minute = m0
	}
	var pt render.Point
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

// Result returns the plots by finding ID.
func (p *Recorder) Result() map[string]*render.Plot {
	if p == nil {
		return nil
	}
	out := make(map[string]*render.Plot, len(p.plots))
	for id, st := range p.plots {
		rp := st.Plot
		out[id] = &rp
	}
	return out
}

func ceilTo(t, step int64) int64 { return -floorDiv(-t, step) * step }

// floorDiv is a / b rounded towards minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
