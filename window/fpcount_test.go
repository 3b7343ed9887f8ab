package window

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

func TestFingerprintCounts(t *testing.T) {
	cfg := Config{Bucket: 10 * time.Second, Length: time.Minute, Lateness: 20 * time.Second, Shards: 2}
	const fp, other = 0xfeedface, 0xbeef
	events := []event.Event{
		errEv(t0, 1, event.ScopeTrain, fp),
		errEv(t0+sec, 1, event.ScopeTrain, fp),
		errEv(t0+2*sec, 2, event.ScopeTrain, fp),
		errEv(t0+3*sec, 3, event.ScopePretrain, fp),
		errEv(t0+10*sec, 1, event.ScopeTrain, fp),
		errEv(t0+10*sec, 4, event.ScopeTrain, fp),
		errEv(t0+10*sec, 4, event.ScopeTrain, other),
		errEv(t0+20*sec, 5, event.ScopeTrain, fp),
	}
	type want struct {
		name           string
		got            func(*Store) any
		value          any
		afterLateEvent any // after one more fp event on wiki 1 at t0+5s, once t0's bucket has closed
	}
	wants := []want{
		{"count wiki 1 first bucket", func(s *Store) any { return s.FingerprintCount(fp, 1, event.ScopeTrain, t0, t0+10*sec) }, int64(2), int64(3)},
		{"count wiki 1 two buckets", func(s *Store) any { return s.FingerprintCount(fp, 1, event.ScopeTrain, t0, t0+20*sec) }, int64(3), int64(4)},
		{"count wiki 1 pretrain", func(s *Store) any { return s.FingerprintCount(fp, 1, event.ScopePretrain, t0, t0+20*sec) }, int64(0), int64(0)},
		{"count wiki 3 pretrain", func(s *Store) any { return s.FingerprintCount(fp, 3, event.ScopePretrain, t0, t0+20*sec) }, int64(1), int64(1)},
		{"count other fingerprint", func(s *Store) any { return s.FingerprintCount(other, 4, event.ScopeTrain, t0, t0+60*sec) }, int64(1), int64(1)},
		{"count unknown wiki", func(s *Store) any { return s.FingerprintCount(fp, 0, event.ScopeTrain, t0, t0+60*sec) }, int64(0), int64(0)},
		{"series wiki 1", func(s *Store) any { return s.FingerprintSeries(fp, 1, event.ScopeTrain, t0, t0+40*sec, nil) }, []int64{2, 1, 0, 0}, []int64{3, 1, 0, 0}},
		{"series wiki 4", func(s *Store) any { return s.FingerprintSeries(fp, 4, event.ScopeTrain, t0, t0+30*sec, nil) }, []int64{0, 1, 0}, []int64{0, 1, 0}},
		{"total train", func(s *Store) any { return s.FingerprintTotal(fp, event.ScopeTrain, t0, t0+60*sec) }, int64(6), int64(7)},
		{"total train first bucket", func(s *Store) any { return s.FingerprintTotal(fp, event.ScopeTrain, t0, t0+10*sec) }, int64(3), int64(4)},
		{"total pretrain", func(s *Store) any { return s.FingerprintTotal(fp, event.ScopePretrain, t0, t0+60*sec) }, int64(1), int64(1)},
		{"total before the ring", func(s *Store) any { return s.FingerprintTotal(fp, event.ScopeTrain, t0-time.Hour.Nanoseconds(), t0) }, int64(0), int64(0)},
		{"distinct without reqIds counts each", func(s *Store) any { return s.FingerprintDistinct(fp, event.ScopeTrain, t0, t0+60*sec) }, int64(6), int64(7)},
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
	tick := req(t0+55*sec, 8, event.ScopeTrain, 200)
	f.w.Add(&tick, nil)
	f.sync()
	require.Zero(t, f.s.Stats().PendingKeys, "closed buckets are written out")
	for _, w := range wants {
		t.Run("closed/"+w.name, func(t *testing.T) { require.Equal(t, w.value, w.got(f.s)) })
	}
	late := errEv(t0+5*sec, 1, event.ScopeTrain, fp)
	f.w.Add(&late, nil)
	f.sync()
	for _, w := range wants {
		t.Run("late/"+w.name, func(t *testing.T) { require.Equal(t, w.afterLateEvent, w.got(f.s)) })
	}
	// Once the ring has moved past them, the counts are gone from the API.
	tick = req(t0+100*sec, 8, event.ScopeTrain, 200) // within one ring length of the newest
	f.w.Add(&tick, nil)
	f.sync()
	require.Zero(t, f.s.FingerprintTotal(fp, event.ScopeTrain, t0, t0+60*sec))
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
		{name: "a request counts once however many others came between", reqs: []string{"a", "b", "c", "d", "e", "a"}, distinct: 5},
		{name: "repeat across a bucket close", reqs: []string{"a", "a", "a", "a"}, distinct: 1, closeMidway: true},
		{name: "new across a bucket close", reqs: []string{"a", "b", "c", "d"}, distinct: 4, closeMidway: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, cfg, 8)
			const fp = 42
			for i, r := range tc.reqs {
				if tc.closeMidway && i == len(tc.reqs)/2 {
					f.sync()
					tick := req(t0+55*sec, 8, event.ScopeTrain, 200)
					f.w.Add(&tick, nil)
					f.sync()
					require.Zero(t, f.s.Stats().PendingKeys)
				}
				ev := errEv(t0+int64(i), 2, event.ScopeTrain, fp) // one wiki: a request has one wiki
				f.w.Add(&ev, detail("m", r))
			}
			f.sync()
			require.Equal(t, tc.distinct, f.s.FingerprintDistinct(fp, event.ScopeTrain, t0, t0+10*sec))
			require.Equal(t, int64(len(tc.reqs)), f.s.FingerprintTotal(fp, event.ScopeTrain, t0, t0+10*sec))
			require.Zero(t, f.s.FingerprintDistinct(fp, event.ScopePretrain, t0, t0+10*sec))
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
			ev := errEv(t0+int64(rep), wikimap.ID(1+i%8), event.ScopeTrain, uint64(1000+i))
			f.w.Add(&ev, detail("m"+strconv.Itoa(i), ""))
		}
	}
	f.sync()
	st := f.s.Stats()
	require.Less(t, st.PendingKeys, 2*maxPending)
	for i := 0; i < n; i += 97 {
		want := int64(1 + i%3)
		require.Equal(t, want, f.s.FingerprintCount(uint64(1000+i), wikimap.ID(1+i%8), event.ScopeTrain, t0, t0+10*sec), "fp %d", i)
		require.Equal(t, want, f.s.FingerprintTotal(uint64(1000+i), event.ScopeTrain, t0, t0+10*sec), "fp %d", i)
	}
}

// TestDistinctAcrossBuckets: a request whose lines fall in several buckets
// counts once, in the bucket of its first line, both among its wiki's
// erroring requests and among the fingerprint's distinct requests; one
// request logging one error 30 times is one erroring request.
func TestDistinctAcrossBuckets(t *testing.T) {
	f := newFixture(t, Config{Bucket: 10 * time.Second, Length: 10 * time.Minute, Lateness: 20 * time.Second, Shards: 2}, 8)
	const fp, fp2 = 42, 43
	for i := range 30 { // one looping request, over three buckets
		ev := errEv(t0+int64(i)*sec, 2, event.ScopePretrain, fp)
		f.w.Add(&ev, detail("m", "loop"))
	}
	ev := errEv(t0+35*sec, 2, event.ScopePretrain, fp2) // the same request, another error
	f.w.Add(&ev, detail("m2", "loop"))
	for i, r := range []string{"x", "y", "x"} {
		ev := errEv(t0+int64(i)*15*sec, 2, event.ScopeTrain, fp)
		f.w.Add(&ev, detail("m", r))
	}
	f.sync()
	pre := f.s.Sum(2, event.ScopePretrain, t0, t0+time.Minute.Nanoseconds())
	require.Equal(t, int64(31), pre.Errors)
	require.Equal(t, int64(1), pre.ErrorRequests, "one request, 31 lines in 4 buckets")
	require.Equal(t, int64(1), f.s.Sum(2, event.ScopePretrain, t0, t0+10*sec).ErrorRequests, "counted in its first bucket")
	require.Equal(t, int64(1), f.s.FingerprintDistinct(fp, event.ScopePretrain, t0, t0+time.Minute.Nanoseconds()))
	require.Equal(t, int64(1), f.s.FingerprintDistinct(fp2, event.ScopePretrain, t0, t0+time.Minute.Nanoseconds()), "another fingerprint of the same request counts for that fingerprint")
	tr := f.s.Sum(2, event.ScopeTrain, t0, t0+time.Minute.Nanoseconds())
	require.Equal(t, int64(3), tr.Errors)
	require.Equal(t, int64(2), tr.ErrorRequests, "the same reqId in another scope is another request")
	require.Equal(t, int64(2), f.s.FingerprintDistinct(fp, event.ScopeTrain, t0, t0+time.Minute.Nanoseconds()))
}

// TestReqSetBounded: the request set keeps its fixed size under a storm of
// distinct requests and still recognises a recent one.
func TestReqSetBounded(t *testing.T) {
	var r reqSet
	r.init()
	for i := range uint64(10 * reqSetSets * reqSetWays) {
		require.True(t, r.firstSighting(mix64(i+1), int64(i/1000)))
		if i%4096 == 0 {
			require.False(t, r.firstSighting(mix64(i+1), int64(i/1000)), "a request just seen is remembered")
		}
	}
	require.Len(t, r.keys, reqSetSets*reqSetWays)
}

// TestDebugRelease: mw-pretrain's debug release is in no wiki's counters
// and no fingerprint count, only in Debug.
func TestDebugRelease(t *testing.T) {
	f := newFixture(t, Config{Bucket: 10 * time.Second, Length: 10 * time.Minute, Lateness: 20 * time.Second, Shards: 2}, 8)
	for i := range 5 {
		ev := req(t0+int64(i)*sec, 3, event.ScopePretrain, 200)
		ev.Role = event.RoleDebug
		f.w.Add(&ev, nil)
	}
	ev := errEv(t0, 3, event.ScopePretrain, 7)
	ev.Role = event.RoleDebug
	f.w.Add(&ev, detail("m", "d"))
	main := req(t0, 1, event.ScopePretrain, 200)
	f.w.Add(&main, nil)
	f.sync()
	require.Zero(t, f.s.Sum(3, event.ScopePretrain, t0, t0+time.Minute.Nanoseconds()))
	require.Zero(t, f.s.FingerprintTotal(7, event.ScopePretrain, t0, t0+time.Minute.Nanoseconds()))
	require.Equal(t, int64(1), f.s.Sum(1, event.ScopePretrain, t0, t0+time.Minute.Nanoseconds()).Requests)
	require.Equal(t, []DebugTraffic{{Wiki: 3, Requests: 5, Errors: 1, Last: t0 + 4*sec}}, f.s.Debug(nil))
}

// TestFingerprintSection: per-section counts sum the section's wikis.
func TestFingerprintSection(t *testing.T) {
	var wikis []wikiAttrs
	for _, sec := range []string{"", "s1", "s3", "s3", "s1", "s3", "s2", "s2", "s3"} {
		wikis = append(wikis, wikiAttrs{section: sec})
	}
	f := newFixtureWikis(t, Config{Bucket: 10 * time.Second, Length: 10 * time.Minute, Lateness: 20 * time.Second, Shards: 2}, wikis)
	require.Equal(t, []string{"s1", "s2", "s3"}, f.s.Sections())
	for w := 1; w <= 8; w++ {
		ev := errEv(t0+int64(w)*sec, wikimap.ID(w), event.ScopeTrain, 9)
		f.w.Add(&ev, detail("m", strconv.Itoa(w)))
	}
	f.sync()
	to := t0 + time.Minute.Nanoseconds()
	require.Equal(t, int64(2), f.s.FingerprintSection(9, 0, event.ScopeTrain, t0, to))
	require.Equal(t, int64(2), f.s.FingerprintSection(9, 1, event.ScopeTrain, t0, to))
	require.Equal(t, int64(4), f.s.FingerprintSection(9, 2, event.ScopeTrain, t0, to))
	require.Zero(t, f.s.FingerprintSection(9, 2, event.ScopePretrain, t0, to))
	require.Equal(t, 2, f.s.SectionOf(3))
}
