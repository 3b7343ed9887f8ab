package detect

// go test ./detect -run '^$' -bench 'Evaluate' -benchmem

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// BenchmarkEvaluateBucket measures one bucket's evaluation with every wiki
// (1072) carrying traffic and 100k live fingerprints in the catalogue: all
// first seen in the ring's first hour, a thousand recurring in every bucket,
// a Pretrain deploy 30 minutes back and three new fingerprints a bucket
// since (the candidates every rule looks at). The bar is < 50 ms.
func BenchmarkEvaluateBucket(b *testing.B) {
	m, err := wikimap.Default()
	require.NoError(b, err)
	versions, rollouts := event.NewInterner(), event.NewInterner()
	store, err := window.New(window.Config{CatalogueEntries: 200000}, m, versions, rollouts, prometheus.NewRegistry())
	require.NoError(b, err)
	defer store.Close()
	w := store.NewWriter()
	bw := int64(10 * time.Second)
	start := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC).UnixNano()
	const buckets = 720 // the full two-hour ring
	const live = 100000
	n := m.Len()
	ro1, ro2 := rollouts.ID([]byte("main-a")), rollouts.ID([]byte("main-b"))
	ver := versions.ID([]byte("1.47.0-wmf.16"))
	testwiki := m.ByNameString("testwiki")
	deployAt := start + (buckets-180)*bw
	det := event.Detail{Message: []byte("synthetic"), Channel: []byte("exception"), ReqID: []byte("r")}
	fp := uint64(1)
	errorEvent := func(t int64, id uint64, ro uint32) {
		sc, wid := event.ScopeTrain, wikimap.ID(1+int(id)%n)
		if id%50 == 0 {
			sc, wid = event.ScopePretrain, testwiki
		}
		ev := event.Event{Time: t, Kind: event.KindError, Wiki: wid, Scope: sc, Fingerprint: id, Version: ver, Rollout: ro,
			Shared: event.SharedClass(id % uint64(event.NumSharedClasses))}
		w.Add(&ev, &det)
	}
	for bk := int64(0); bk < buckets; bk++ {
		t := start + bk*bw
		ro := ro1
		if t >= deployAt {
			ro = ro2
		}
		for id := 1; id <= n; id++ {
			ev := event.Event{Time: t, Kind: event.KindRequest, Wiki: wikimap.ID(id), Status: 200, Version: ver}
			for r := 0; r < 3; r++ {
				w.Add(&ev, &det)
			}
		}
		ev := event.Event{Time: t, Kind: event.KindRequest, Wiki: testwiki, Scope: event.ScopePretrain, Status: 200, Rollout: ro}
		w.Add(&ev, &det)
		switch {
		case bk < buckets/2:
			for i := 0; i < 2*live/buckets; i++ {
				errorEvent(t, fp, ro)
				fp++
			}
		case t >= deployAt:
			for i := 0; i < 3; i++ {
				errorEvent(t, fp, ro)
				fp++
			}
		}
		for i := uint64(0); i < 1000; i++ {
			errorEvent(t, 1+(uint64(bk)*7919+i*104729)%live, ro)
		}
		w.Flush()
	}
	store.Sync()
	d, err := New(testConfig(), m, store)
	require.NoError(b, err)
	// Evaluate everything but the last ten minutes once, then measure the
	// buckets of the last ten minutes, one per iteration, starting over when
	// they run out (restoring the detector state is not timed).
	mark := start + (buckets-60)*bw
	d.Evaluate(mark)
	base := *d
	b.ReportAllocs()
	b.ResetTimer()
	next := mark
	for i := 0; i < b.N; i++ {
		if next >= start+buckets*bw {
			b.StopTimer()
			*d = base
			d.findings = map[string]*tracked{}
			next = mark
			b.StartTimer()
		}
		next += bw
		d.Evaluate(next)
	}
}
