package verdict

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/ingest"
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
		CacheBytes: 32 << 20, CatalogueEntries: 1000, CatalogueBytes: 1 << 20}, wikis, ingest.NewInterner(), ingest.NewInterner(), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, store.Close()) }()
	w := store.NewWriter()
	testwiki, enwiki := wikis.ByNameString("testwiki"), wikis.ByNameString("enwiki")
	g0 := wikis.InGroup("group0")[0]
	require.NotEqual(t, testwiki, g0)
	add := func(at time.Time, id wikimap.ID, sc ingest.Scope, kind ingest.Kind) {
		ev := ingest.Event{Time: at.UnixNano(), Kind: kind, Wiki: id, Scope: sc, Status: 200}
		var d *ingest.Detail
		if kind == ingest.KindError {
			ev.Fingerprint = 42
			d = &ingest.Detail{Message: []byte("x"), ReqID: []byte("r")}
		}
		w.Add(&ev, d)
	}
	for m := range 10 {
		at := min_(m)
		add(at, testwiki, ingest.ScopePretrain, ingest.KindRequest)
		add(at, testwiki, ingest.ScopeTrain, ingest.KindRequest) // not the cohort's Pretrain-served traffic
		add(at, enwiki, ingest.ScopeTrain, ingest.KindRequest)
		add(at, enwiki, ingest.ScopeTrain, ingest.KindRequest)
		add(at, g0, ingest.ScopeTrain, ingest.KindRequest)
		if m >= 5 {
			add(at, testwiki, ingest.ScopePretrain, ingest.KindError)
			add(at, g0, ingest.ScopeTrain, ingest.KindError)
		}
	}
	add(min_(20), enwiki, ingest.ScopeTrain, ingest.KindRequest) // moves the watermark on
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
