package rateplot

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/render"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// TestLivePlot draws a finding from what the window holds: the minutes from
// half an hour before its onset to the watermark, the cohort on its scope
// and the rest of the fleet as control, its own error counted apart.
func TestLivePlot(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	store, err := window.New(window.Config{Bucket: 10 * time.Second, Length: 2 * time.Hour, Lateness: 30 * time.Second,
		CacheBytes: 32 << 20, CatalogueEntries: 1000, CatalogueBytes: 1 << 20}, wikis, event.NewInterner(), event.NewInterner(), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, store.Close()) }()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	require.Nil(t, Live(store, wikis, detect.Finding{ID: "x", StartedAt: t0, DetectedAt: t0}), "no data, no plot")

	w := store.NewWriter()
	frwiki, enwiki := wikis.ByNameString("frwiki"), wikis.ByNameString("enwiki")
	for m := range 60 {
		at := t0.Add(time.Duration(m) * time.Minute).UnixNano()
		for _, id := range []wikimap.ID{frwiki, enwiki} {
			for i := range 10 {
				w.Add(&event.Event{Time: at + int64(i), Kind: event.KindRequest, Wiki: id, Scope: event.ScopeTrain, Status: 200}, nil)
			}
		}
		if m >= 40 {
			w.Add(&event.Event{Time: at, Kind: event.KindError, Wiki: frwiki, Scope: event.ScopeTrain, Fingerprint: 0xbeef},
				&event.Detail{Message: []byte("m"), ReqID: []byte("r")})
		}
	}
	w.Flush()
	store.Sync()
	f := detect.Finding{ID: "f", Kind: detect.KindSharedDataSpillover, Wikis: []string{"frwiki"}, Fingerprint: "beef",
		StartedAt: t0.Add(40 * time.Minute), DetectedAt: t0.Add(42 * time.Minute)}
	p := Live(store, wikis, f)
	require.NotNil(t, p)
	require.Equal(t, t0.Add(10*time.Minute), p.Start, "half an hour before the onset")
	require.Equal(t, "train", p.CohortScope)
	require.Len(t, p.Points, 48, "12:10 to 12:57: the last minute the watermark (12:58:30) closed")
	require.Equal(t, render.Point{CohortRequests: 10, ControlRequests: 10}, p.Points[0])
	require.Equal(t, render.Point{CohortRequests: 10, CohortErrors: 1, ControlRequests: 10, FingerprintErrors: 1}, p.Points[30])
}
