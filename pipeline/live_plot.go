package pipeline

import (
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// LivePlot is a finding's plot from what the window holds now, laid out as
// the replay records it (plotRecorder): per minute from half an hour
// before the onset (or the oldest minute held) to half an hour after the
// detection (or the watermark). The daemon's page draws it; nil when the
// window holds none of those minutes.
func LivePlot(store *window.Store, wikis *wikimap.Map, f detect.Finding) *RatePlot {
	wm := store.Watermark()
	if wm <= 0 {
		return nil
	}
	rec := &plotRecorder{store: store, wikis: wikis, start: store.Oldest(), end: wm, plots: map[string]*plotState{}, minute: -1}
	rec.add(f)
	rec.fill(wm)
	p := rec.result()[f.ID]
	if p == nil || len(p.Points) == 0 {
		return nil
	}
	return p
}
