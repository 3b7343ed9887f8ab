package window

import (
	"slices"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Watermark is the newest event time minus the allowed lateness, Unix ns;
// 0 before any event. Buckets ending at or before it are complete, except
// for late events still inside the ring.
func (s *Store) Watermark() int64 {
	n := s.newest.Load()
	if n == 0 {
		return 0
	}
	return n - s.lateness
}

// Newest is the time of the newest event applied, Unix ns; 0 before any.
func (s *Store) Newest() int64 { return s.newest.Load() }

// BucketWidth is the bucket width in ns.
func (s *Store) BucketWidth() int64 { return s.width }

// BucketStart floors t to the start of its bucket.
func (s *Store) BucketStart(t int64) int64 { return floorDiv(t, s.width) * s.width }

// Oldest is the start of the oldest bucket still in the ring; 0 before any
// event.
func (s *Store) Oldest() int64 {
	n := s.newest.Load()
	if n == 0 {
		return 0
	}
	return (floorDiv(n, s.width) - s.slots + 1) * s.width
}

// ring returns the bucket numbers [lo, hi] the ring holds, and ok=false
// before any event.
func (s *Store) ring() (lo, hi int64, ok bool) {
	n := s.newest.Load()
	if n == 0 {
		return 0, 0, false
	}
	hi = floorDiv(n, s.width)
	return hi - s.slots + 1, hi, true
}

// inRing clamps the buckets [b0, b1) to those the ring holds: an empty
// range (b0 ≥ b1) before the first event.
func (s *Store) inRing(b0, b1 int64) (int64, int64) {
	lo, hi, ok := s.ring()
	if !ok {
		return b0, b0
	}
	return max(b0, lo), min(b1, hi+1)
}

// span converts the time range [from, to) to the bucket numbers [b0, b1)
// whose start lies in it.
func (s *Store) span(from, to int64) (b0, b1 int64) {
	b0, b1 = ceilDiv(from, s.width), ceilDiv(to, s.width)
	return b0, max(b0, b1)
}

// seriesSpan is span for the Series methods, which return one entry per
// bucket: a range of more buckets than the ring holds keeps its last
// ring-length of buckets, as nothing older can be in the ring.
func (s *Store) seriesSpan(from, to int64) (b0, b1 int64) {
	b0, b1 = s.span(from, to)
	if b1-b0 > s.slots {
		b0 = b1 - s.slots
	}
	return b0, b1
}

// Sum adds up the counters of wiki w in scope sc over the buckets whose
// start lies in [from, to).
func (s *Store) Sum(w wikimap.ID, sc event.Scope, from, to int64) Counts {
	var c Counts
	if !s.validKey(w, sc) {
		return c
	}
	b0, b1 := s.inRing(s.span(from, to))
	if b0 >= b1 {
		return c
	}
	sh := s.shardOf(w)
	sh.mu.RLock()
	sh.sum(w, sc, b0, b1, &c)
	sh.mu.RUnlock()
	return c
}

// Series appends to dst[:0] one Counts per bucket whose start lies in
// [from, to), oldest first; buckets outside the ring are zero. A range of
// more buckets than the ring holds keeps its newest ring-length of buckets.
func (s *Store) Series(w wikimap.ID, sc event.Scope, from, to int64, dst []Counts) []Counts {
	b0, b1 := s.seriesSpan(from, to)
	dst = resize(dst, int(b1-b0))
	if !s.validKey(w, sc) {
		return dst
	}
	r0, r1 := s.inRing(b0, b1)
	sh := s.shardOf(w)
	sh.mu.RLock()
	for b := r0; b < r1; b++ {
		sh.sum(w, sc, b, b+1, &dst[b-b0])
	}
	sh.mu.RUnlock()
	return dst
}

// SumWikis sums every wiki's counters in scope sc over [from, to) in one
// pass. The result is indexed by wikimap.ID and has Len()+1 entries.
func (s *Store) SumWikis(sc event.Scope, from, to int64, dst []Counts) []Counts {
	dst = resize(dst, s.nWikis+1)
	if sc >= event.NumScopes {
		return dst
	}
	b0, b1 := s.inRing(s.span(from, to))
	if b0 >= b1 {
		return dst
	}
	for _, sh := range s.shards {
		sh.mu.RLock()
		for w := sh.index; w <= s.nWikis; w += len(s.shards) {
			if w == 0 {
				continue
			}
			sh.sum(wikimap.ID(w), sc, b0, b1, &dst[w])
		}
		sh.mu.RUnlock()
	}
	return dst
}

// Debug appends to dst[:0] the wikis mw-pretrain's debug release served
// or logged for since the window started, with their counts.
func (s *Store) Debug(dst []DebugTraffic) []DebugTraffic {
	dst = dst[:0]
	for _, sh := range s.shards {
		sh.mu.RLock()
		for i, c := range sh.debug {
			if c.requests+c.errors == 0 {
				continue
			}
			w := i*len(s.shards) + sh.index
			dst = append(dst, DebugTraffic{Wiki: wikimap.ID(w), Requests: c.requests, Errors: c.errors, Last: c.last})
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(dst, func(a, b DebugTraffic) int { return int(a.Wiki) - int(b.Wiki) })
	return dst
}

// resize returns dst[:n], zeroed, growing it if needed.
func resize[T any](dst []T, n int) []T {
	if cap(dst) < n {
		return make([]T, n)
	}
	dst = dst[:n]
	clear(dst)
	return dst
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }
