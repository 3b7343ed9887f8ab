package window

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string // "" = valid
	}{
		{name: "zero is the default", cfg: Config{}},
		{name: "explicit", cfg: Config{Bucket: time.Second, Length: time.Minute, Lateness: 5 * time.Second, Shards: 3}},
		{name: "negative bucket", cfg: Config{Bucket: -time.Second}, field: "Bucket"},
		{name: "negative length", cfg: Config{Length: -time.Hour}, field: "Length"},
		{name: "length shorter than bucket", cfg: Config{Bucket: time.Minute, Length: 30 * time.Second, Lateness: time.Second}, field: "Length"},
		{name: "length not a multiple", cfg: Config{Bucket: 7 * time.Second, Length: time.Minute}, field: "Length"},
		{name: "too many buckets", cfg: Config{Bucket: time.Millisecond, Length: 24 * time.Hour}, field: "Length"},
		{name: "negative lateness", cfg: Config{Lateness: -time.Second}, field: "Lateness"},
		{name: "lateness not shorter than length", cfg: Config{Length: time.Minute, Lateness: time.Minute}, field: "Lateness"},
		{name: "negative cache", cfg: Config{CacheBytes: -1}, field: "CacheBytes"},
		{name: "negative catalogue entries", cfg: Config{CatalogueEntries: -1}, field: "CatalogueEntries"},
		{name: "negative catalogue bytes", cfg: Config{CatalogueBytes: -1}, field: "CatalogueBytes"},
		{name: "too many shards", cfg: Config{Shards: maxShards + 1}, field: "Shards"},
		{name: "negative rollout merge", cfg: Config{RolloutMerge: -time.Minute}, field: "RolloutMerge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.withDefaults().validate()
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.Contains(t, err.Error(), tc.field)
		})
	}

	t.Run("defaults", func(t *testing.T) {
		c := Config{}.withDefaults()
		require.Equal(t, 10*time.Second, c.Bucket)
		require.Equal(t, 2*time.Hour, c.Length)
		require.Zero(t, c.Lateness, "zero is a lateness")
		require.Equal(t, runtime.GOMAXPROCS(0), c.Shards)
		require.Equal(t, 10*time.Minute, c.RolloutMerge)
	})

	t.Run("New wraps the error", func(t *testing.T) {
		_, err := newStore(Config{Bucket: -1}, testGroups(3), event.NewInterner(), event.NewInterner(), nil)
		require.ErrorIs(t, err, ErrInvalidConfig)
		_, err = New(Config{}, nil, event.NewInterner(), event.NewInterner(), nil)
		require.Error(t, err)
		_, err = newStore(Config{}, testGroups(3), nil, event.NewInterner(), nil)
		require.Error(t, err)
	})
}

func TestNewWithWikimap(t *testing.T) {
	m, err := wikimap.Default()
	require.NoError(t, err)
	s, err := New(Config{Shards: 2}, m, event.NewInterner(), event.NewInterner(), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	st := s.Stats()
	require.Equal(t, m.Len(), st.Wikis)
	t.Logf("default config, %d wikis: ring %d B per wiki, %.1f MiB in all; memory bound %.1f MiB",
		st.Wikis, st.RingBytesPerWiki, float64(st.RingBytes)/(1<<20), float64(st.MemoryBound)/(1<<20))
	for id := 1; id <= m.Len(); id++ {
		require.Equal(t, m.Wiki(wikimap.ID(id)).Group, s.groupNames[s.groupOf[id]], "wiki %d", id)
	}
	require.ElementsMatch(t, []string{"", "group0", "group1", "group2"}, s.groupNames)
}

// TestBuckets checks bucket arithmetic with a ring of six 10-s buckets,
// 20 s of lateness and two shards (odd and even wikis).
func TestBuckets(t *testing.T) {
	cfg := Config{Bucket: 10 * time.Second, Length: time.Minute, Lateness: 20 * time.Second, Shards: 2}
	type check struct {
		wiki     wikimap.ID
		scope    event.Scope
		from, to int64
		want     Counts
	}
	for _, tc := range []struct {
		name           string
		events         []event.Event
		checks         []check
		tooOld, tooNew int64
		invalid        int64
	}{
		{
			name: "bucket boundaries",
			events: []event.Event{
				req(t0, 1, event.ScopeTrain, 200),
				req(t0+10*sec-1, 1, event.ScopeTrain, 503),
				req(t0+10*sec, 1, event.ScopeTrain, 500),
				req(t0+20*sec-1, 1, event.ScopeTrain, 499),
			},
			checks: []check{
				{1, event.ScopeTrain, t0, t0 + 10*sec, Counts{Requests: 2, Status5xx: 1}},
				{1, event.ScopeTrain, t0 + 10*sec, t0 + 20*sec, Counts{Requests: 2, Status5xx: 1}},
				{1, event.ScopeTrain, t0, t0 + 20*sec, Counts{Requests: 4, Status5xx: 2}},
				// A bucket counts when its start lies in [from, to).
				{1, event.ScopeTrain, t0 + 1, t0 + 20*sec, Counts{Requests: 2, Status5xx: 1}},
				{1, event.ScopeTrain, t0, t0 + 10*sec + 1, Counts{Requests: 4, Status5xx: 2}},
				{1, event.ScopeTrain, t0, t0, Counts{}},
				{1, event.ScopeTrain, t0 + 20*sec, t0, Counts{}},
			},
		},
		{
			name: "scopes, wikis and error classes are separate",
			events: []event.Event{
				req(t0, 1, event.ScopePretrain, 200),
				req(t0, 2, event.ScopeTrain, 200),
				errEv(t0, 1, event.ScopePretrain, 7),
				{Time: t0 + sec, Kind: event.KindError, Wiki: 1, Scope: event.ScopePretrain, Fingerprint: 8, Shared: event.SharedCoreDB},
			},
			checks: []check{
				{1, event.ScopePretrain, t0, t0 + 10*sec, Counts{Requests: 1, Errors: 2, SharedErrors: 1, ErrorRequests: 2}},
				{1, event.ScopeTrain, t0, t0 + 10*sec, Counts{}},
				{2, event.ScopeTrain, t0, t0 + 10*sec, Counts{Requests: 1}},
				{3, event.ScopeTrain, t0, t0 + 10*sec, Counts{}},
			},
		},
		{
			name: "out of order within the ring",
			events: []event.Event{
				req(t0+30*sec, 1, event.ScopeTrain, 200),
				req(t0+10*sec, 1, event.ScopeTrain, 200),
				req(t0+20*sec, 1, event.ScopeTrain, 200),
				req(t0+10*sec, 1, event.ScopeTrain, 200),
			},
			checks: []check{
				{1, event.ScopeTrain, t0 + 10*sec, t0 + 20*sec, Counts{Requests: 2}},
				{1, event.ScopeTrain, t0 + 20*sec, t0 + 30*sec, Counts{Requests: 1}},
				{1, event.ScopeTrain, t0 + 30*sec, t0 + 40*sec, Counts{Requests: 1}},
			},
		},
		{
			name: "late events behind the watermark still count while in the ring",
			events: []event.Event{
				req(t0+55*sec, 1, event.ScopeTrain, 200), // ring holds buckets t0 .. t0+50s
				req(t0, 1, event.ScopeTrain, 200),        // 55 s late: behind the 20-s watermark, oldest bucket
				req(t0-1, 1, event.ScopeTrain, 200),      // one ns before the ring
			},
			checks: []check{
				{1, event.ScopeTrain, t0, t0 + 10*sec, Counts{Requests: 1}},
				{1, event.ScopeTrain, t0 - 10*sec, t0 + 60*sec, Counts{Requests: 2}},
			},
			tooOld: 1,
		},
		{
			name: "ring wrap resets the reused slot",
			events: []event.Event{
				req(t0, 1, event.ScopeTrain, 500),
				req(t0, 1, event.ScopeTrain, 500),
				req(t0+60*sec, 1, event.ScopeTrain, 200), // same slot as t0, one ring later
				req(t0, 1, event.ScopeTrain, 200),        // now older than the ring
			},
			checks: []check{
				{1, event.ScopeTrain, t0 + 60*sec, t0 + 70*sec, Counts{Requests: 1}},
				{1, event.ScopeTrain, t0, t0 + 10*sec, Counts{}},
				{1, event.ScopeTrain, t0 - time.Hour.Nanoseconds(), t0 + time.Hour.Nanoseconds(), Counts{Requests: 1}},
			},
			tooOld: 1,
		},
		{
			name: "a slot a quiet shard never refreshed reads as empty",
			events: []event.Event{
				req(t0, 1, event.ScopeTrain, 200),        // shard 1, slot 0 holds t0
				req(t0+60*sec, 2, event.ScopeTrain, 200), // shard 0 moves the ring on
			},
			checks: []check{
				{1, event.ScopeTrain, t0 + 60*sec, t0 + 70*sec, Counts{}},
				{1, event.ScopeTrain, t0, t0 + 70*sec, Counts{}},
				{2, event.ScopeTrain, t0 + 60*sec, t0 + 70*sec, Counts{Requests: 1}},
			},
		},
		{
			name: "far future is dropped, the near future moves the ring",
			events: []event.Event{
				req(t0, 1, event.ScopeTrain, 200),
				req(t0+60*sec+1, 1, event.ScopeTrain, 200), // more than one ring length ahead
				req(t0+60*sec, 1, event.ScopeTrain, 200),   // exactly one ring length ahead: accepted
			},
			checks: []check{
				{1, event.ScopeTrain, t0 + 60*sec, t0 + 70*sec, Counts{Requests: 1}},
				{1, event.ScopeTrain, t0, t0 + 10*sec, Counts{}},
			},
			tooNew: 1,
		},
		{
			name: "far past and invalid events",
			events: []event.Event{
				req(t0, 1, event.ScopeTrain, 200),
				req(t0-time.Hour.Nanoseconds(), 1, event.ScopeTrain, 200),
				req(-5, 1, event.ScopeTrain, 200),
				req(t0, 0, event.ScopeTrain, 200),  // unknown wiki
				req(t0, 99, event.ScopeTrain, 200), // outside the map
				req(t0, 1, 7, 200),                 // no such scope
				{Time: t0, Wiki: 1},                // no kind
			},
			checks: []check{
				{1, event.ScopeTrain, t0, t0 + 10*sec, Counts{Requests: 1}},
			},
			tooOld: 2, invalid: 4,
		},
		{
			name:   "nothing before the first event",
			checks: []check{{1, event.ScopeTrain, 0, t0 + time.Hour.Nanoseconds(), Counts{}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, cfg, 8)
			for i := range tc.events {
				f.w.Add(&tc.events[i], nil)
				f.sync() // one at a time: the order is the test
			}
			for _, c := range tc.checks {
				require.Equal(t, c.want, f.s.Sum(c.wiki, c.scope, c.from, c.to), "Sum(%d, %v, t0%+ds, t0%+ds)", c.wiki, c.scope, (c.from-t0)/sec, (c.to-t0)/sec)
			}
			st := f.s.Stats()
			require.Equal(t, tc.tooOld, st.DroppedTooOld, "too old")
			require.Equal(t, tc.tooNew, st.DroppedTooNew, "too new")
			require.Equal(t, tc.invalid, st.DroppedInvalid, "invalid")
		})
	}
}

func TestTimes(t *testing.T) {
	f := newFixture(t, Config{Bucket: 10 * time.Second, Length: time.Minute, Lateness: 20 * time.Second, Shards: 2}, 8)
	require.Zero(t, f.s.Watermark())
	require.Zero(t, f.s.Newest())
	require.Zero(t, f.s.Oldest())
	require.Equal(t, int64(10*time.Second), f.s.BucketWidth())
	for _, tc := range []struct{ t, want int64 }{
		{t0, t0}, {t0 + 1, t0}, {t0 + 10*sec - 1, t0}, {t0 + 10*sec, t0 + 10*sec}, {-1, -10 * sec}, {0, 0},
	} {
		require.Equal(t, tc.want, f.s.BucketStart(tc.t), "BucketStart(%d)", tc.t)
	}

	ev := req(t0+25*sec, 3, event.ScopeTrain, 200)
	f.w.Add(&ev, nil)
	f.sync()
	require.Equal(t, t0+25*sec, f.s.Newest())
	require.Equal(t, t0+5*sec, f.s.Watermark())
	require.Equal(t, t0-30*sec, f.s.Oldest())  // six buckets ending with t0+20s
	ev = req(t0+sec, 4, event.ScopeTrain, 200) // older: changes nothing
	f.w.Add(&ev, nil)
	f.sync()
	require.Equal(t, t0+25*sec, f.s.Newest())
}

func TestSeries(t *testing.T) {
	f := newFixture(t, Config{Bucket: 10 * time.Second, Length: time.Minute, Lateness: 20 * time.Second, Shards: 3}, 8)
	for i := range 8 {
		for w := wikimap.ID(1); w <= 8; w++ {
			for range int(w) {
				ev := req(t0+int64(i)*10*sec, w, event.ScopeTrain, 200)
				f.w.Add(&ev, nil)
			}
		}
		ev := req(t0+int64(i)*10*sec, 5, event.ScopePretrain, 502)
		f.w.Add(&ev, nil)
	}
	f.sync()
	// The ring now holds buckets t0+20s .. t0+70s.
	for _, tc := range []struct {
		name     string
		wiki     wikimap.ID
		scope    event.Scope
		from, to int64
		want     []int64 // requests per bucket
	}{
		{"inside", 2, event.ScopeTrain, t0 + 20*sec, t0 + 50*sec, []int64{2, 2, 2}},
		{"starts before the ring", 3, event.ScopeTrain, t0, t0 + 40*sec, []int64{0, 0, 3, 3}},
		{"ends after the newest", 4, event.ScopeTrain, t0 + 60*sec, t0 + 100*sec, []int64{4, 4, 0, 0}},
		{"pretrain", 5, event.ScopePretrain, t0 + 50*sec, t0 + 80*sec, []int64{1, 1, 1}},
		{"empty range", 1, event.ScopeTrain, t0 + 50*sec, t0 + 50*sec, []int64{}},
		{"longer than the ring keeps the newest buckets", 1, event.ScopeTrain, 0, t0 + 80*sec, []int64{1, 1, 1, 1, 1, 1}},
		{"unknown wiki", 0, event.ScopeTrain, t0 + 20*sec, t0 + 40*sec, []int64{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := f.s.Series(tc.wiki, tc.scope, tc.from, tc.to, make([]Counts, 3))
			require.Len(t, got, len(tc.want))
			var sum Counts
			for i, c := range got {
				require.Equal(t, tc.want[i], c.Requests, "bucket %d", i)
				sum.Requests += c.Requests
				sum.Status5xx += c.Status5xx
			}
			require.Equal(t, f.s.Sum(tc.wiki, tc.scope, tc.from, tc.to), sum)
		})
	}

	t.Run("SumWikis", func(t *testing.T) {
		dst := []Counts{{Requests: 99}}
		got := f.s.SumWikis(event.ScopeTrain, t0+20*sec, t0+50*sec, dst)
		require.Len(t, got, 9)
		require.Equal(t, Counts{}, got[0])
		for w := 1; w <= 8; w++ {
			require.Equal(t, Counts{Requests: int64(3 * w)}, got[w], "wiki %d", w)
			require.Equal(t, f.s.Sum(wikimap.ID(w), event.ScopeTrain, t0+20*sec, t0+50*sec), got[w])
		}
		got = f.s.SumWikis(event.ScopePretrain, 0, t0+time.Hour.Nanoseconds(), got)
		require.Equal(t, Counts{Requests: 6, Status5xx: 6}, got[5])
		require.Equal(t, Counts{}, got[4])
	})
}

func TestCloseAndSync(t *testing.T) {
	s, err := newStore(Config{Shards: 2}, testGroups(4), event.NewInterner(), event.NewInterner(), nil)
	require.NoError(t, err)
	w := s.NewWriter()
	ev := req(t0, 1, event.ScopeTrain, 200)
	w.Add(&ev, nil)
	w.Flush()
	s.Sync()
	require.Equal(t, int64(1), s.Sum(1, event.ScopeTrain, t0, t0+sec).Requests)
	require.NoError(t, s.Close())
	require.True(t, errors.Is(s.Close(), ErrClosed))
	// After Close, writers discard and Sync returns.
	w.Add(&ev, nil)
	w.Flush()
	s.Sync()
}

func TestStatsSizes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cfg        Config
		perWiki    int64
		cacheBytes int64
	}{
		{"default ring: 720 buckets × 2 scopes × 20 B", Config{}, 720 * 2 * 20, 64 << 20},
		{"one-minute ring of 1-s buckets", Config{Bucket: time.Second, Length: time.Minute, Lateness: time.Second}, 60 * 2 * 20, 64 << 20},
		{"small caches are 32 MiB", Config{CacheBytes: 1 << 20}, 720 * 2 * 20, 32 << 20},
		{"caches round up to whole chunks", Config{CacheBytes: 100 << 20}, 720 * 2 * 20, 512 * (64 << 10) * 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg, 10)
			st := f.s.Stats()
			require.Equal(t, tc.perWiki, st.RingBytesPerWiki)
			require.Equal(t, tc.cacheBytes, cacheCapacity(f.s.cfg.CacheBytes))
			require.Equal(t, uint64(tc.cacheBytes), st.CacheMaxBytes, "fastcache's own capacity")
			require.GreaterOrEqual(t, st.RingBytes, 10*st.RingBytesPerWiki)
			require.Greater(t, st.MemoryBound, st.RingBytes+tc.cacheBytes)
			require.Equal(t, 1, st.Writers)
		})
	}
}
