package verdict

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// TestWindowSource reads a real window: the Pretrain cohort's
// Pretrain-served counts against the train fleet outside it, and a train
// group's wikis against the others.
func TestWindowSource(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	store, err := window.New(window.Config{Bucket: 10 * time.Second, Length: 2 * time.Hour, Lateness: 30 * time.Second,
		CacheBytes: 32 << 20, CatalogueEntries: 1000, CatalogueBytes: 1 << 20}, wikis, event.NewInterner(), event.NewInterner(), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, store.Close()) }()
	w := store.NewWriter()
	testwiki, enwiki := wikis.ByNameString("testwiki"), wikis.ByNameString("enwiki")
	g0 := wikis.InGroup("group0")[0]
	require.NotEqual(t, testwiki, g0)
	add := func(at time.Time, id wikimap.ID, sc event.Scope, kind event.Kind) {
		ev := event.Event{Time: at.UnixNano(), Kind: kind, Wiki: id, Scope: sc, Status: 200}
		var d *event.Detail
		if kind == event.KindError {
			ev.Fingerprint = 42
			d = &event.Detail{Message: []byte("x"), ReqID: []byte("r")}
		}
		w.Add(&ev, d)
	}
	for m := range 10 {
		at := min_(m)
		add(at, testwiki, event.ScopePretrain, event.KindRequest)
		add(at, testwiki, event.ScopeTrain, event.KindRequest) // not the cohort's Pretrain-served traffic
		add(at, enwiki, event.ScopeTrain, event.KindRequest)
		add(at, enwiki, event.ScopeTrain, event.KindRequest)
		add(at, g0, event.ScopeTrain, event.KindRequest)
		if m >= 5 {
			add(at, testwiki, event.ScopePretrain, event.KindError)
			add(at, g0, event.ScopeTrain, event.KindError)
		}
	}
	add(min_(20), enwiki, event.ScopeTrain, event.KindRequest) // moves the watermark on
	w.Flush()
	store.Sync()

	src := NewWindowSource(store, wikis, []string{"testwiki"})
	require.Equal(t, min_(0), src.DataStart(), "the first bucket with requests, not the ring's start")
	require.Equal(t, min_(20).Add(-30*time.Second), src.Watermark())
	p := Deploy{Scope: "pretrain", Version: "r", At: min_(5)}
	require.Equal(t, Counts{From: min_(0), To: min_(5), CohortRequests: 5, ControlRequests: 15}, src.Counts(p, min_(0), min_(5)))
	require.Equal(t, Counts{From: min_(5), To: min_(10), CohortRequests: 5, CohortErrors: 5, ControlRequests: 15, ControlErrors: 5},
		src.Counts(p, min_(5), min_(10)))
	g := Deploy{Scope: "train", Group: wikis.Wiki(g0).Group, Version: "v", At: min_(5)}
	c := src.Counts(g, min_(5), min_(10))
	require.Equal(t, int64(5), c.CohortErrors)
	require.Equal(t, int64(0), c.ControlErrors)
	require.Equal(t, "testwiki, Pretrain-served", src.Cohort(p))
	require.Equal(t, "group0 wikis, train-served", src.Cohort(g))
}
