package rateplot

import (
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/render"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// Live is a finding's plot from what the window holds now, laid out as
// the replay records it (Recorder): per minute from half an hour
// before the onset (or the oldest minute held) to half an hour after the
// detection (or the watermark). The daemon's page draws it; nil when the
// window holds none of those minutes.
func Live(store *window.Store, wikis *wikimap.Map, f detect.Finding) *render.Plot {
	wm := store.Watermark()
	if wm <= 0 {
		return nil
	}
	rec := NewRecorder(store, wikis, store.Oldest(), wm)
	rec.Add(f)
	rec.Fill(wm)
	p := rec.Result()[f.ID]
	if p == nil || len(p.Points) == 0 {
		return nil
	}
	return p
}
