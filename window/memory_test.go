package window

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// TestMemoryMillionFingerprints feeds 1,000,000 distinct fingerprints over
// two hours of event time, from two Writers, into a window of 1000 wikis
// and checks that memory stays under the configured bound: the Go heap
// (runtime.MemStats, fastcache's index included) plus fastcache's off-heap
// chunks (its own stats). Every fingerprint past the catalogue cap is
// counted as an eviction.
func TestMemoryMillionFingerprints(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("feeds a million fingerprints and measures the heap")
	}
	const (
		n       = 1_000_000
		writers = 2
		nWikis  = 1000
	)
	cfg := Config{
		Bucket: 10 * time.Second, Length: 2 * time.Hour, Lateness: 30 * time.Second, Shards: 2,
		CacheBytes: 32 << 20, CatalogueEntries: 50_000, CatalogueBytes: 32 << 20,
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)

	versions, rollouts := event.NewInterner(), event.NewInterner()
	s, err := newStore(cfg, testGroups(nWikis), versions, rollouts, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	version := versions.ID([]byte("1.47.0-wmf.16"))

	trace := []byte(strings.Repeat("#3 /srv/mediawiki/php-1.47.0-wmf.16/includes/libs/rdbms/database/Database.php(1582): Wikimedia\\Rdbms\\Database->query()\n", 20))
	step := int64(2*time.Hour) / n
	// The writers stop at phase boundaries so that the live heap can be
	// measured after a GC with nothing in flight.
	const phases = 8
	var peakHeap int64
	for p := range phases {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				wr := s.NewWriter()
				msg := make([]byte, 0, 128)
				d := &event.Detail{
					Class: []byte("Wikimedia\\Rdbms\\DBQueryError"), Channel: []byte("exception"),
					File: []byte("/srv/mediawiki/php-1.47.0-wmf.16/includes/libs/rdbms/database/Database.php"), Trace: trace,
				}
				for i := p*n/phases + w; i < (p+1)*n/phases; i += writers {
					msg = append(msg[:0], "Error 1205: Lock wait timeout exceeded on table page_"...)
					msg = strconv.AppendInt(msg, int64(i), 10)
					d.Message, d.Exemplar, d.ReqID = msg, msg, msg[len(msg)-6:]
					ev := errEv(t0+int64(i)*step, wikimap.ID(1+i%nWikis), event.Scope(i%7/6), uint64(i)*0x9E3779B97F4A7C15|1)
					ev.Version = version
					wr.Add(&ev, d)
					if i%(16*1024) == w {
						wr.Flush()
					}
				}
				wr.Flush()
			}()
		}
		wg.Wait()
		s.Sync()
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		peakHeap = max(peakHeap, int64(ms.HeapAlloc)-int64(before.HeapAlloc))
	}

	st := s.Stats()
	total := peakHeap + int64(st.CacheBytes)
	t.Logf("1M fingerprints: live heap peak %.1f MiB above baseline, fastcache %.1f MiB (%d entries, %d misses), total %.1f MiB; bound %.1f MiB",
		mib(peakHeap), mib(int64(st.CacheBytes)), st.CacheEntries, st.CacheMisses, mib(total), mib(st.MemoryBound))
	t.Logf("catalogue %d entries, %.1f MiB accounted (cap %d MiB), %d evictions; ring %.1f MiB (%d B per wiki); known table %.1f MiB",
		st.CatalogueEntries, mib(st.CatalogueBytes), cfg.CatalogueBytes>>20, st.CatalogueEvictions, mib(st.RingBytes), st.RingBytesPerWiki, mib(st.KnownTableBytes))

	require.Equal(t, int64(n), st.AddedErrors)
	require.Zero(t, st.DroppedTooOld+st.DroppedTooNew+st.DroppedInvalid)
	require.LessOrEqual(t, st.CatalogueEntries, cfg.CatalogueEntries)
	require.Equal(t, int64(n-st.CatalogueEntries), st.CatalogueEvictions, "every fingerprint past the cap is an eviction")
	require.LessOrEqual(t, st.CatalogueBytes, int64(cfg.CatalogueBytes))
	require.LessOrEqual(t, st.CacheBytes, st.CacheMaxBytes)
	require.LessOrEqual(t, total, st.MemoryBound, "memory stays under the configured bound")
	// The newest fingerprints are still counted.
	lastI := uint64(n - 1)
	last := lastI*0x9E3779B97F4A7C15 | 1
	at := t0 + int64(n-1)*step
	require.Equal(t, int64(1), s.FingerprintTotal(last, event.Scope((n-1)%7/6), s.BucketStart(at), at+1))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
