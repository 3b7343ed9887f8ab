package config

import (
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// TestValidateRefusesWhatWindowRefuses keeps config's check of the window
// section and package window's own in agreement: whatever window would
// refuse, config refuses first, naming the YAML key.
func TestValidateRefusesWhatWindowRefuses(t *testing.T) {
	m, err := wikimap.Default()
	require.NoError(t, err)
	d := func(x time.Duration) model.Duration { return model.Duration(x) }
	base := Default().Window
	for _, tc := range []struct {
		name  string
		edit  func(*Window)
		field string
	}{
		{"negative bucket", func(w *Window) { w.Bucket = d(-time.Second) }, "window.bucket"},
		{"negative length", func(w *Window) { w.Length = d(-time.Hour) }, "window.length"},
		{"length shorter than a bucket", func(w *Window) { w.Bucket, w.Length, w.Lateness = d(time.Minute), d(30*time.Second), d(time.Second) }, "window.length"},
		{"length not a multiple", func(w *Window) { w.Bucket, w.Length = d(7*time.Second), d(time.Minute) }, "window.length"},
		{"too many buckets", func(w *Window) { w.Bucket, w.Length = d(time.Millisecond), d(24*time.Hour) }, "window.length"},
		{"negative lateness", func(w *Window) { w.Lateness = d(-time.Second) }, "window.lateness"},
		{"lateness not shorter than length", func(w *Window) { w.Length, w.Lateness = d(time.Minute), d(time.Minute) }, "window.lateness"},
		{"negative cache", func(w *Window) { w.CacheBytes = -1 }, "window.cache_bytes"},
		{"negative catalogue entries", func(w *Window) { w.CatalogueEntries = -1 }, "window.catalogue_entries"},
		{"negative catalogue bytes", func(w *Window) { w.CatalogueBytes = -1 }, "window.catalogue_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := base
			tc.edit(&w)
			// As internal/stages maps the section.
			wcfg := window.Config{
				Bucket: time.Duration(w.Bucket), Length: time.Duration(w.Length), Lateness: time.Duration(w.Lateness),
				CacheBytes: w.CacheBytes, CatalogueEntries: w.CatalogueEntries, CatalogueBytes: w.CatalogueBytes,
			}
			_, err := window.New(wcfg, m, event.NewInterner(), event.NewInterner(), nil)
			require.ErrorIs(t, err, window.ErrInvalidConfig, "window refuses it")

			c := Default()
			c.Window = w
			require.ErrorContains(t, c.Validate(), "field "+tc.field+": ")
		})
	}
}
