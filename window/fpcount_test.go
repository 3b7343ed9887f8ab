package window

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

func TestFingerprintCounts(t *testing.T) {
	cfg := Config{Bucket: 10 * time.Second, Length: time.Minute, Lateness: 20 * time.Second, Shards: 2}
	const fp, other = 0xfeedface, 0xbeef
	events := []ingest.Event{
		errEv(t0, 1, ingest.ScopeTrain, fp),
		errEv(t0+sec, 1, ingest.ScopeTrain, fp),
		errEv(t0+2*sec, 2, ingest.ScopeTrain, fp),
		errEv(t0+3*sec, 3, ingest.ScopePretrain, fp),
		errEv(t0+10*sec, 1, ingest.ScopeTrain, fp),
		errEv(t0+10*sec, 4, ingest.ScopeTrain, fp),
		errEv(t0+10*sec, 4, ingest.ScopeTrain, other),
		errEv(t0+20*sec, 5, ingest.ScopeTrain, fp),
	}
	type want struct {
		name           string
		got            func(*Store) any
		value          any
		afterLateEvent any // after one more fp event on wiki 1 at t0+5s, once t0's bucket has closed
	}
	wants := []want{
		{"count wiki 1 first bucket", func(s *Store) any { return s.FingerprintCount(fp, 1, ingest.ScopeTrain, t0, t0+10*sec) }, int64(2), int64(3)},
		{"count wiki 1 two buckets", func(s *Store) any { return s.FingerprintCount(fp, 1, ingest.ScopeTrain, t0, t0+20*sec) }, int64(3), int64(4)},
		{"count wiki 1 pretrain", func(s *Store) any { return s.FingerprintCount(fp, 1, ingest.ScopePretrain, t0, t0+20*sec) }, int64(0), int64(0)},
		{"count wiki 3 pretrain", func(s *Store) any { return s.FingerprintCount(fp, 3, ingest.ScopePretrain, t0, t0+20*sec) }, int64(1), int64(1)},
		{"count other fingerprint", func(s *Store) any { return s.FingerprintCount(other, 4, ingest.ScopeTrain, t0, t0+60*sec) }, int64(1), int64(1)},
		{"count unknown wiki", func(s *Store) any { return s.FingerprintCount(fp, 0, ingest.ScopeTrain, t0, t0+60*sec) }, int64(0), int64(0)},
		{"series wiki 1", func(s *Store) any { return s.FingerprintSeries(fp, 1, ingest.ScopeTrain, t0, t0+40*sec, nil) }, []int64{2, 1, 0, 0}, []int64{3, 1, 0, 0}},
		{"series wiki 4", func(s *Store) any { return s.FingerprintSeries(fp, 4, ingest.ScopeTrain, t0, t0+30*sec, nil) }, []int64{0, 1, 0}, []int64{0, 1, 0}},
		{"total train", func(s *Store) any { return s.FingerprintTotal(fp, ingest.ScopeTrain, t0, t0+60*sec) }, int64(6), int64(7)},
		{"total train first bucket", func(s *Store) any { return s.FingerprintTotal(fp, ingest.ScopeTrain, t0, t0+10*sec) }, int64(3), int64(4)},
		{"total pretrain", func(s *Store) any { return s.FingerprintTotal(fp, ingest.ScopePretrain, t0, t0+60*sec) }, int64(1), int64(1)},
		{"total before the ring", func(s *Store) any { return s.FingerprintTotal(fp, ingest.ScopeTrain, t0-time.Hour.Nanoseconds(), t0) }, int64(0), int64(0)},
		{"distinct without reqIds counts each", func(s *Store) any { return s.FingerprintDistinct(fp, ingest.ScopeTrain, t0, t0+60*sec) }, int64(6), int64(7)},
	}
	f := newFixture(t, cfg, 8)
	for i := range events {
		f.w.Add(&events[i], nil)
	}
	f.sync()
	require.Positive(t, f.s.Stats().PendingKeys, "open buckets are buffered")
	for _, w := range wants {
		t.Run("open/"+w.name, func(t *testing.T) { require.Equal(t, w.value, w.got(f.s)) })
	}
	// Move the watermark past every bucket so the buffered counts go to fastcache.
	tick := req(t0+55*sec, 8, ingest.ScopeTrain, 200)
	f.w.Add(&tick, nil)
	f.sync()
	require.Zero(t, f.s.Stats().PendingKeys, "closed buckets are written out")
	for _, w := range wants {
		t.Run("closed/"+w.name, func(t *testing.T) { require.Equal(t, w.value, w.got(f.s)) })
	}
	late := errEv(t0+5*sec, 1, ingest.ScopeTrain, fp)
	f.w.Add(&late, nil)
	f.sync()
	for _, w := range wants {
		t.Run("late/"+w.name, func(t *testing.T) { require.Equal(t, w.afterLateEvent, w.got(f.s)) })
	}
	// Once the ring has moved past them, the counts are gone from the API.
	tick = req(t0+100*sec, 8, ingest.ScopeTrain, 200) // within one ring length of the newest
	f.w.Add(&tick, nil)
	f.sync()
	require.Zero(t, f.s.FingerprintTotal(fp, ingest.ScopeTrain, t0, t0+60*sec))
}

func TestFingerprintDistinct(t *testing.T) {
	cfg := Config{Bucket: 10 * time.Second, Length: time.Minute, Lateness: 20 * time.Second, Shards: 2}
	for _, tc := range []struct {
		name        string
		reqs        []string // reqIds, one event each, spread over wikis 1 and 2 unless sameWiki
		distinct    int64
		closeMidway bool // close the bucket after the first half, the rest arrive late
	}{
		{name: "one request repeating", reqs: []string{"a", "a", "a", "a", "a"}, distinct: 1},
		{name: "two requests interleaved", reqs: []string{"a", "b", "a", "b", "a", "b"}, distinct: 2},
		{name: "all distinct", reqs: []string{"a", "b", "c", "d", "e", "f", "g"}, distinct: 7},
		{name: "no reqId counts each", reqs: []string{"", "", ""}, distinct: 3},
		{name: "recent window is four requests", reqs: []string{"a", "b", "c", "d", "e", "a"}, distinct: 6},
		{name: "repeat across a bucket close", reqs: []string{"a", "a", "a", "a"}, distinct: 1, closeMidway: true},
		{name: "new across a bucket close", reqs: []string{"a", "b", "c", "d"}, distinct: 4, closeMidway: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, cfg, 8)
			const fp = 42
			for i, r := range tc.reqs {
				if tc.closeMidway && i == len(tc.reqs)/2 {
					f.sync()
					tick := req(t0+55*sec, 8, ingest.ScopeTrain, 200)
					f.w.Add(&tick, nil)
					f.sync()
					require.Zero(t, f.s.Stats().PendingKeys)
				}
				ev := errEv(t0+int64(i), 2, ingest.ScopeTrain, fp) // one wiki: a request has one wiki
				f.w.Add(&ev, detail("m", r))
			}
			f.sync()
			require.Equal(t, tc.distinct, f.s.FingerprintDistinct(fp, ingest.ScopeTrain, t0, t0+10*sec))
			require.Equal(t, int64(len(tc.reqs)), f.s.FingerprintTotal(fp, ingest.ScopeTrain, t0, t0+10*sec))
			require.Zero(t, f.s.FingerprintDistinct(fp, ingest.ScopePretrain, t0, t0+10*sec))
		})
	}
}

// TestPendingOverflow fills one open bucket with more distinct keys than the
// write-combining buffer holds: it is written out early and nothing is lost.
func TestPendingOverflow(t *testing.T) {
	f := newFixture(t, Config{Bucket: 10 * time.Second, Length: time.Minute, Lateness: 20 * time.Second, Shards: 1, CatalogueEntries: 100}, 8)
	n := maxPending + maxPending/2
	for i := range n {
		for rep := range 1 + i%3 {
			ev := errEv(t0+int64(rep), wikimap.ID(1+i%8), ingest.ScopeTrain, uint64(1000+i))
			f.w.Add(&ev, detail("m"+strconv.Itoa(i), ""))
		}
	}
	f.sync()
	st := f.s.Stats()
	require.Less(t, st.PendingKeys, 2*maxPending)
	for i := 0; i < n; i += 97 {
		want := int64(1 + i%3)
		require.Equal(t, want, f.s.FingerprintCount(uint64(1000+i), wikimap.ID(1+i%8), ingest.ScopeTrain, t0, t0+10*sec), "fp %d", i)
		require.Equal(t, want, f.s.FingerprintTotal(uint64(1000+i), ingest.ScopeTrain, t0, t0+10*sec), "fp %d", i)
	}
}
