package window

import (
	"unsafe"

	"github.com/VictoriaMetrics/fastcache"

	"github.com/wikimedia/pretrain-detector/event"
)

// Stats are the window's sizes and counters, for metrics and the README.
type Stats struct {
	Wikis              int
	Shards             int
	Buckets            int   // buckets in the ring
	RingBytes          int64 // bucket counters of all wikis and scopes
	RingBytesPerWiki   int64
	CatalogueEntries   int
	CatalogueBytes     int64 // accounted heap bytes of the catalogue, text included
	CatalogueEvictions int64
	CacheBytes         uint64 // fastcache memory in use
	CacheMaxBytes      uint64
	CacheEntries       uint64
	CacheMisses        uint64
	CacheGetCalls      uint64
	CacheSetCalls      uint64
	CacheCollisions    uint64
	KnownTableBytes    int64 // fixed: the Writers' lock-free table of catalogued fingerprints
	Writers            int   // Writers created
	// MemoryBound is the most memory the window can take with its config and
	// Writers: fastcache (off the Go heap) and its index (on it), the
	// catalogue, the ring, the known table, the pending maps, the deploy
	// memory and the batches in flight.
	MemoryBound    int64
	PendingKeys    int   // fingerprint counts buffered by shards before fastcache
	AddedRequests  int64 // events applied
	AddedErrors    int64
	DroppedTooOld  int64
	DroppedTooNew  int64
	DroppedInvalid int64
	DeployKeys     int // versions and rollouts tracked by the timeline
	Watermark      int64
	Newest         int64
}

// Stats returns the current sizes. It takes every shard's lock briefly and
// walks fastcache's buckets: call it at scrape rate, not per event.
func (s *Store) Stats() Stats {
	st := Stats{
		Wikis:            s.nWikis,
		Shards:           len(s.shards),
		Buckets:          int(s.slots),
		RingBytesPerWiki: s.slots * event.NumScopes * int64(cellSize),
		DroppedTooOld:    s.dropped[dropTooOld].Load(),
		DroppedTooNew:    s.dropped[dropTooNew].Load(),
		DroppedInvalid:   s.dropped[dropInvalid].Load(),
		Watermark:        s.Watermark(),
		Newest:           s.Newest(),
		KnownTableBytes:  int64(len(s.cat.table)) * 8,
	}
	for i := range s.added {
		if i%2 == 0 {
			st.AddedRequests += s.added[i].Load()
		} else {
			st.AddedErrors += s.added[i].Load()
		}
	}
	st.Writers = int(s.writers.Load())
	st.MemoryBound = s.memoryBound(st.Writers)
	for _, sh := range s.shards {
		sh.mu.RLock()
		st.RingBytes += int64(len(sh.cells))*int64(cellSize) + int64(len(sh.slotBucket))*8
		st.PendingKeys += sh.pendingKeys()
		sh.mu.RUnlock()
	}
	st.CatalogueEntries, st.CatalogueBytes, st.CatalogueEvictions = s.cat.size()
	st.DeployKeys = s.tl.size()
	var fs fastcache.Stats
	s.cache.UpdateStats(&fs)
	st.CacheBytes, st.CacheMaxBytes, st.CacheEntries, st.CacheMisses = fs.BytesSize, fs.MaxBytesSize, fs.EntriesCount, fs.Misses
	st.CacheGetCalls, st.CacheSetCalls, st.CacheCollisions = fs.GetCalls, fs.SetCalls, fs.Collisions
	return st
}

// Sizes behind memoryBound. fastcache keeps its index in Go maps of
// uint64 → uint64 that also hold stale entries until a bucket's ring wraps:
// measured at 2.4 × CacheBytes of heap with this package's 28–32-byte
// entries (per-wiki, per-section and all-wiki counts; about 40–48 bytes of
// index per entry, stale ones included); the bound allows 3 ×.
const (
	indexPerCacheByte = 3.0
	pendSlotBytes     = 2*(int64(unsafe.Sizeof(fpKey{}))+4+1) + int64(unsafe.Sizeof(allVal{})) + 4 // map slot, value, free index
	seenBytes         = 2 * (int64(unsafe.Sizeof(seenRec{})) + 8 + 4 + 1)                          // rec + map slot
	timelineBytes     = 2 * (8 + 16 + 1)
)

func (s *Store) memoryBound(writers int) int64 {
	cfg := s.cfg
	n := int64(len(s.shards))
	ring := int64(len(s.shards[0].cells))*int64(cellSize)*n + s.slots*8*n
	cache := cacheCapacity(cfg.CacheBytes)
	index := int64(float64(cache) * indexPerCacheByte)
	pending := n * 3 * maxPending * pendSlotBytes
	reqs := n * (reqSetBytes + int64(len(s.shards[0].debug))*int64(unsafe.Sizeof(debugCell{})))
	seen := n*maxSeenPerShard*seenBytes + maxTimelineKeys*timelineBytes
	batchBytes := int64(batchEvents)*int64(unsafe.Sizeof(item{})) + batchArenaMax + 8<<10
	batches := (n*(shardQueue+1) + int64(writers)*n) * batchBytes
	return cache + index + int64(cfg.CatalogueBytes) + ring + int64(len(s.cat.table))*8 + pending + seen + batches + reqs
}

// cacheCapacity is what fastcache.New(n) can hold: 512 buckets of whole
// 64-KiB chunks, so never less than 32 MiB.
func cacheCapacity(n int) int64 {
	const buckets, chunk = 512, 64 << 10
	perBucket := (int64(n) + buckets - 1) / buckets
	return buckets * chunk * ((perBucket + chunk - 1) / chunk)
}
