package window

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

func TestCatalogueEntry(t *testing.T) {
	cfg := Config{Bucket: 10 * time.Second, Length: time.Hour, Lateness: 20 * time.Second, Shards: 2}
	for _, tc := range []struct {
		name  string
		add   func(f *fixture)
		check func(t *testing.T, fi FingerprintInfo)
	}{
		{
			name: "fields of the first occurrence",
			add: func(f *fixture) {
				ev := errEv(t0+5*sec, 3, event.ScopePretrain, 9)
				ev.Shared = event.SharedCoreDB
				ev.Version = f.versions.ID([]byte("1.47.0-wmf.16"))
				f.w.Add(&ev, detail("Error 1205: Lock wait timeout", "req-1"))
			},
			check: func(t *testing.T, fi FingerprintInfo) {
				require.Equal(t, FingerprintInfo{
					ID: 9, FirstSeen: t0 + 5*sec, LastSeen: t0 + 5*sec, Count: 1,
					Class: "Wikimedia\\Rdbms\\DBQueryError", Channel: "exception",
					Message:  "Error 1205: Lock wait timeout",
					Exemplar: "[req-1] /w/index.php   Error 1205: Lock wait timeout",
					Trace:    "#0 /srv/mediawiki/includes/libs/rdbms/database/Database.php(1234): foo()",
					File:     "/srv/mediawiki/php-1.47.0-wmf.16/includes/libs/rdbms/database/Database.php",
					Frame:    "includes/libs/rdbms/database/Database.php",
					Shared:   event.SharedCoreDB, Versions: []string{"1.47.0-wmf.16"}, Wikis: []wikimap.ID{3},
					Scopes: [event.NumScopes]uint64{event.ScopePretrain: 1},
				}, fi)
			},
		},
		{
			name: "the text is the earliest occurrence's, whatever the order",
			add: func(f *fixture) {
				for i, at := range []int64{t0 + 10*sec, t0 + 30*sec, t0 + sec} {
					ev := errEv(at, wikimap.ID(1+i), event.ScopeTrain, 9)
					f.w.Add(&ev, detail("message "+strconv.Itoa(i), "r"))
					f.sync() // the first must be catalogued before the next is written
				}
			},
			check: func(t *testing.T, fi FingerprintInfo) {
				require.Equal(t, "message 2", fi.Message)
				require.Equal(t, t0+sec, fi.FirstSeen)
				require.Equal(t, t0+30*sec, fi.LastSeen)
				require.Equal(t, uint64(3), fi.Count)
				require.Equal(t, [event.NumScopes]uint64{event.ScopeTrain: 3}, fi.Scopes)
				require.Equal(t, []wikimap.ID{3, 1, 2}, fi.Wikis, "in the order first seen")
			},
		},
		{
			name: "text is truncated on a rune boundary",
			add: func(f *fixture) {
				d := detail(strings.Repeat("é", 1000), "r") // 2000 bytes
				d.Trace = []byte(strings.Repeat("x", 10_000))
				d.Class = []byte(strings.Repeat("€", 100)) // 300 bytes, 3 per rune
				ev := errEv(t0, 1, event.ScopeTrain, 9)
				f.w.Add(&ev, d)
			},
			check: func(t *testing.T, fi FingerprintInfo) {
				require.Len(t, fi.Message, 1024)
				require.True(t, utf8.ValidString(fi.Message))
				require.Len(t, fi.Trace, 4096)
				require.Len(t, fi.Class, 255) // 85 whole runes of the 256 bytes allowed
				require.True(t, utf8.ValidString(fi.Class))
			},
		},
		{
			name: "versions keep the newest distinct ones",
			add: func(f *fixture) {
				for i := range 11 {
					ev := errEv(t0+int64(i), 1, event.ScopeTrain, 9)
					ev.Version = f.versions.ID([]byte("v" + strconv.Itoa(i%10)))
					f.w.Add(&ev, nil)
				}
			},
			check: func(t *testing.T, fi FingerprintInfo) {
				// v0..v7 fill the ring, v8 and v9 replace v0 and v1, v0 comes back.
				require.Equal(t, []string{"v3", "v4", "v5", "v6", "v7", "v8", "v9", "v0"}, fi.Versions)
				require.Empty(t, fi.Message, "no detail was given")
			},
		},
		{
			name: "wikis keep the first seen ones, whatever the order the shards apply in",
			add: func(f *fixture) {
				for w := wikimap.ID(100); w > 0; w-- {
					ev := errEv(t0+int64(w%7), w, event.ScopeTrain, 9)
					f.w.Add(&ev, nil)
				}
			},
			check: func(t *testing.T, fi FingerprintInfo) {
				// The 64 smallest (first seen, id): by w%7, then w.
				var want []wikimap.ID
				for r := range wikimap.ID(7) {
					for w := wikimap.ID(1); w <= 100; w++ {
						if w%7 == r && len(want) < maxWikis {
							want = append(want, w)
						}
					}
				}
				require.Equal(t, want, fi.Wikis)
				require.Equal(t, uint64(100), fi.Count)
			},
		},
		{
			name: "versions keep the most recently seen, whatever the order",
			add: func(f *fixture) {
				// Ten versions, v<i> last seen at t0+i, given newest first.
				for i := 9; i >= 0; i-- {
					for _, at := range []int64{t0 - 100*sec, t0 + int64(i)*sec} {
						ev := errEv(at, 1, event.ScopeTrain, 9)
						ev.Version = f.versions.ID([]byte("v" + strconv.Itoa(i)))
						f.w.Add(&ev, nil)
					}
				}
			},
			check: func(t *testing.T, fi FingerprintInfo) {
				require.Equal(t, []string{"v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"}, fi.Versions)
			},
		},
		{
			name: "the shared-data class is the earliest classified occurrence's",
			add: func(f *fixture) {
				for _, x := range []struct {
					at int64
					sc event.SharedClass
				}{{t0 + 2*sec, event.SharedX1}, {t0, event.SharedNone}, {t0 + sec, event.SharedCentralAuth}, {t0 + 3*sec, event.SharedCoreDB}} {
					ev := errEv(x.at, 1, event.ScopeTrain, 9)
					ev.Shared = x.sc
					f.w.Add(&ev, nil)
					f.sync()
				}
			},
			check: func(t *testing.T, fi FingerprintInfo) {
				require.Equal(t, event.SharedCentralAuth, fi.Shared)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, cfg, 100)
			tc.add(f)
			f.sync()
			fi, ok := f.s.Fingerprint(9)
			require.True(t, ok)
			tc.check(t, fi)
			_, ok = f.s.Fingerprint(10)
			require.False(t, ok)
		})
	}
}

// TestDetailCopiedOnce checks that a Writer copies Detail bytes for a new
// fingerprint and not for a catalogued one.
func TestDetailCopiedOnce(t *testing.T) {
	f := newFixture(t, Config{Shards: 1}, 8)
	ev := errEv(t0, 1, event.ScopeTrain, 77)
	f.w.Add(&ev, detail("first", "r1"))
	require.NotEmpty(t, f.w.bufs[0].arena)
	f.sync()
	require.True(t, f.s.cat.known(77))
	later := ev
	later.Time = t0 + sec
	f.w.Add(&later, detail("second", "r2"))
	require.Empty(t, f.w.bufs[0].arena)
	require.Equal(t, int32(-1), f.w.bufs[0].items[0].det)
	require.NotZero(t, f.w.bufs[0].items[0].req)
	f.sync()
	fi, _ := f.s.Fingerprint(77)
	require.Equal(t, "first", fi.Message)

	// An earlier occurrence is copied, and its text replaces the later one's.
	earlier := ev
	earlier.Time = t0 - sec
	f.w.Add(&earlier, detail("earlier", "r0"))
	require.NotEmpty(t, f.w.bufs[0].arena)
	f.sync()
	fi, _ = f.s.Fingerprint(77)
	require.Equal(t, "earlier", fi.Message)

	// At the same time, the smaller text wins: both orders give the same.
	var texts []string
	for _, order := range [][]string{{"tie-a", "tie-b"}, {"tie-b", "tie-a"}} {
		g := newFixture(t, Config{Shards: 1}, 8)
		for _, m := range order {
			g.w.Add(&ev, detail(m, "r"))
			g.sync()
		}
		fi, _ := g.s.Fingerprint(77)
		texts = append(texts, fi.Message)
	}
	require.Equal(t, texts[0], texts[1])

	// A burst of a new fingerprint is copied once per Writer until Flush.
	ev.Fingerprint = 78
	for range 100 {
		f.w.Add(&ev, detail("burst", "r3"))
	}
	require.Len(t, f.w.bufs[0].dets, 1)
	// Fingerprint 0 is not special-cased away.
	ev.Fingerprint = 0
	f.w.Add(&ev, detail("zero", "r4"))
	require.Len(t, f.w.bufs[0].dets, 2)
	ev.Fingerprint = 78
	f.sync()
	fi, _ = f.s.Fingerprint(78)
	require.Equal(t, "burst", fi.Message)
	require.Equal(t, uint64(100), fi.Count)
}

// TestCatalogueTextRefresh covers an entry made without text (its detail
// was not copied because the fingerprint had just been evicted): the next
// copied detail fills it.
func TestCatalogueTextRefresh(t *testing.T) {
	c := newCatalogue(10, 1<<20, event.NewInterner())
	b := &batch{items: []item{{ev: errEv(t0, 1, event.ScopeTrain, 5), det: -1}}}
	c.update(b, []int32{0})
	require.False(t, c.known(5))
	fi, _ := c.get(5)
	require.Empty(t, fi.Message)

	b = &batch{}
	det := b.addDetail(detail("now with text", "r"))
	b.items = []item{{ev: errEv(t0+sec, 1, event.ScopeTrain, 5), det: det}}
	c.update(b, []int32{0})
	require.True(t, c.known(5))
	fi, _ = c.get(5)
	require.Equal(t, "now with text", fi.Message)
	require.Equal(t, uint64(2), fi.Count)
}

func TestCatalogueCaps(t *testing.T) {
	bigTrace := strings.Repeat("#0 frame\n", 400) // truncated to 4 KiB
	for _, tc := range []struct {
		name        string
		entries     int
		bytes       int    // negative: that many entries' worth, and a half
		adds        int    // distinct fingerprints 1..adds, in order
		touch       uint64 // re-added after every fingerprint, so it stays recent
		wantEntries int
		wantEvicted int64
		present     []uint64
		absent      []uint64
	}{
		{name: "under the caps", entries: 10, bytes: 1 << 20, adds: 10, wantEntries: 10, present: []uint64{1, 10}},
		{name: "entry cap evicts the least recently seen", entries: 10, bytes: 1 << 20, adds: 25, wantEntries: 10, wantEvicted: 15,
			present: []uint64{16, 25}, absent: []uint64{1, 15}},
		{name: "a recently seen fingerprint survives", entries: 10, bytes: 1 << 20, adds: 25, touch: 1, wantEntries: 10, wantEvicted: 15,
			present: []uint64{1, 17, 25}, absent: []uint64{2, 16}},
		{name: "byte cap", entries: 1000, bytes: -10, adds: 25, wantEntries: 10, wantEvicted: 15,
			present: []uint64{16, 25}, absent: []uint64{15}},
		{name: "one entry over the byte cap stays alone", entries: 1000, bytes: 100, adds: 3, wantEntries: 1, wantEvicted: 2,
			present: []uint64{3}, absent: []uint64{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mkDetail := func(i int) *event.Detail {
				d := detail("message "+strconv.Itoa(10+i), "r") // same length for every i
				d.Trace = []byte(bigTrace)
				return d
			}
			if tc.bytes < 0 {
				c := newCatalogue(1, 1<<30, event.NewInterner())
				b := &batch{}
				det := b.addDetail(mkDetail(0))
				b.items = []item{{ev: errEv(t0, 1, event.ScopeTrain, 1), det: det}}
				c.update(b, []int32{0})
				_, size, _ := c.size()
				tc.bytes = int(size) * (-2*tc.bytes + 1) / 2
			}
			f := newFixture(t, Config{Shards: 2, CatalogueEntries: tc.entries, CatalogueBytes: tc.bytes}, 8)
			for i := 1; i <= tc.adds; i++ {
				ev := errEv(t0+int64(i)*sec, wikimap.ID(1+i%8), event.ScopeTrain, uint64(i))
				d := mkDetail(i)
				f.w.Add(&ev, d)
				f.sync() // one at a time: recency is the test
				if tc.touch != 0 {
					ev := errEv(t0+int64(i)*sec, 1, event.ScopeTrain, tc.touch)
					f.w.Add(&ev, nil)
					f.sync()
				}
			}
			st := f.s.Stats()
			require.Equal(t, tc.wantEntries, st.CatalogueEntries)
			require.Equal(t, tc.wantEvicted, st.CatalogueEvictions)
			if tc.wantEntries > 1 {
				require.LessOrEqual(t, st.CatalogueBytes, int64(tc.bytes))
			}
			for _, fp := range tc.present {
				_, ok := f.s.Fingerprint(fp)
				require.True(t, ok, "fingerprint %d", fp)
			}
			for _, fp := range tc.absent {
				_, ok := f.s.Fingerprint(fp)
				require.False(t, ok, "fingerprint %d", fp)
				require.False(t, f.s.cat.known(fp), "evicted fingerprint %d still known", fp)
			}
			// Counts do not depend on the catalogue.
			require.Equal(t, int64(1), f.s.FingerprintTotal(2, event.ScopeTrain, t0, t0+time.Hour.Nanoseconds()))
		})
	}
}

func TestActiveAndNewFingerprints(t *testing.T) {
	f := newFixture(t, Config{Shards: 2}, 8)
	for _, e := range []struct {
		fp uint64
		at int64
	}{{3, t0}, {1, t0 + 10*sec}, {2, t0 + 10*sec}, {3, t0 + 50*sec}, {4, t0 + 20*sec}} {
		ev := errEv(e.at, wikimap.ID(e.fp), event.ScopeTrain, e.fp)
		f.w.Add(&ev, detail("m", "r"))
	}
	f.sync()
	ids := func(fis []FingerprintInfo) []uint64 {
		var out []uint64
		for _, fi := range fis {
			out = append(out, fi.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		got  []FingerprintInfo
		want []uint64
	}{
		{"active since t0", f.s.ActiveFingerprints(t0, nil), []uint64{3, 1, 2, 4}},
		{"active since t0+20s", f.s.ActiveFingerprints(t0+20*sec, nil), []uint64{3, 4}},
		{"active since later", f.s.ActiveFingerprints(t0+51*sec, nil), nil},
		{"first seen from t0+10s", f.s.FirstSeenAfter(t0+10*sec, make([]FingerprintInfo, 5)), []uint64{1, 2, 4}},
		{"first seen from t0+11s", f.s.FirstSeenAfter(t0+11*sec, nil), []uint64{4}},
	} {
		t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, ids(tc.got)) })
	}
}

// TestCatalogueAccounting checks that the bytes the catalogue accounts for
// cover what its entries really take on the heap, so the byte cap holds.
func TestCatalogueAccounting(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes heap sizes")
	}
	for _, tc := range []struct {
		name  string
		trace int
		wikis int
	}{
		{"short text", 0, 1},
		{"long trace", 6000, 1},
		{"many wikis", 200, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 20_000
			c := newCatalogue(n, 1<<40, event.NewInterner())
			b := &batch{}
			d := detail("Error 1205: Lock wait timeout exceeded; try restarting transaction", "r")
			d.Trace = []byte(strings.Repeat("t", tc.trace))
			det := b.addDetail(d)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.GC() // twice: the first only moves sync.Pool contents to the victim cache
			runtime.ReadMemStats(&before)
			for i := range n {
				b.items = b.items[:0]
				for w := range tc.wikis {
					b.items = append(b.items, item{ev: errEv(t0, wikimap.ID(1+w), event.ScopeTrain, uint64(i+1)), det: det})
				}
				idx := make([]int32, len(b.items))
				for j := range idx {
					idx[j] = int32(j)
				}
				c.update(b, idx)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			_, accounted, _ := c.size()
			real := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			t.Logf("%d entries: heap %d B (%d B/entry), accounted %d B (%d B/entry)", n, real, real/n, accounted, accounted/n)
			require.GreaterOrEqual(t, accounted, real*95/100, "accounting must not undercount the heap by more than 5%")
			require.LessOrEqual(t, accounted, real*3/2, "accounting should not be wildly pessimistic")
			runtime.KeepAlive(c)
		})
	}
}
