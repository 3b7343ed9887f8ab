package window

import (
	"cmp"
	"slices"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// FingerprintCount is the number of occurrences of fingerprint fp on wiki w
// in scope sc over the buckets whose start lies in [from, to).
func (s *Store) FingerprintCount(fp uint64, w wikimap.ID, sc event.Scope, from, to int64) int64 {
	if !s.validKey(w, sc) {
		return 0
	}
	b0, b1 := s.inRing(s.span(from, to))
	var n int64
	sh := s.shardOf(w)
	sh.mu.RLock()
	for b := b0; b < b1; b++ {
		n += int64(sh.wikiCount(fpKey{fp: fp, bucket: b, sub: uint16(w), scope: sc}))
	}
	sh.mu.RUnlock()
	return n
}

// FingerprintSeries appends to dst[:0] the occurrences of fp on wiki w in
// scope sc per bucket whose start lies in [from, to), oldest first.
func (s *Store) FingerprintSeries(fp uint64, w wikimap.ID, sc event.Scope, from, to int64, dst []int64) []int64 {
	b0, b1 := s.seriesSpan(from, to)
	dst = resize(dst, int(b1-b0))
	if !s.validKey(w, sc) {
		return dst
	}
	r0, r1 := s.inRing(b0, b1)
	sh := s.shardOf(w)
	sh.mu.RLock()
	for b := r0; b < r1; b++ {
		dst[b-b0] = int64(sh.wikiCount(fpKey{fp: fp, bucket: b, sub: uint16(w), scope: sc}))
	}
	sh.mu.RUnlock()
	return dst
}

// FingerprintTotal is the number of occurrences of fp over all wikis in
// scope sc over the buckets whose start lies in [from, to).
func (s *Store) FingerprintTotal(fp uint64, sc event.Scope, from, to int64) int64 {
	n, _ := s.fingerprintAll(fp, sc, from, to)
	return n
}

// FingerprintDistinct is the number of distinct requests (reqId) that
// logged fp in scope sc over [from, to): each request counts once, in the
// bucket of its first line of fp, however many lines and buckets it spans
// (within the reqSet's memory, about 20 minutes at 50 erroring requests a
// second per shard). Events without a reqId each count. It never exceeds
// FingerprintTotal.
func (s *Store) FingerprintDistinct(fp uint64, sc event.Scope, from, to int64) int64 {
	_, d := s.fingerprintAll(fp, sc, from, to)
	return d
}

func (s *Store) fingerprintAll(fp uint64, sc event.Scope, from, to int64) (count, distinct int64) {
	if sc >= event.NumScopes {
		return 0, 0
	}
	b0, b1 := s.inRing(s.span(from, to))
	for _, sh := range s.shards {
		sh.mu.RLock()
		for b := b0; b < b1; b++ {
			v := sh.allCount(fpKey{fp: fp, bucket: b, sub: uint16(sh.index), scope: sc})
			count += int64(v.count)
			distinct += int64(v.distinct)
		}
		sh.mu.RUnlock()
	}
	return count, distinct
}

// FingerprintSection is the number of occurrences of fp on the wikis of DB
// section sect (an index into Sections) in scope sc over the buckets whose
// start lies in [from, to). It costs Shards reads per bucket, whatever the
// number of wikis in the section.
func (s *Store) FingerprintSection(fp uint64, sect int, sc event.Scope, from, to int64) int64 {
	if sc >= event.NumScopes || sect < 0 || sect >= maxSections {
		return 0
	}
	b0, b1 := s.inRing(s.span(from, to))
	var n int64
	for _, sh := range s.shards {
		sh.mu.RLock()
		for b := b0; b < b1; b++ {
			n += int64(sh.sectCount(fpKey{fp: fp, bucket: b, sub: uint16(sect)*maxShards + uint16(sh.index), scope: sc}))
		}
		sh.mu.RUnlock()
	}
	return n
}

// Fingerprint returns the catalogue entry of fp.
func (s *Store) Fingerprint(fp uint64) (FingerprintInfo, bool) { return s.cat.get(fp) }

// ActiveFingerprints appends to dst[:0] the catalogue entries last seen at
// or after seenSince, ordered by first seen then ID.
func (s *Store) ActiveFingerprints(seenSince int64, dst []FingerprintInfo) []FingerprintInfo {
	return s.cat.filter(dst, func(e *entry) bool { return e.last >= seenSince })
}

// SeenCount is a catalogued fingerprint's id and its train-scope
// occurrences counted while in the catalogue (all time, not per bucket).
type SeenCount struct {
	ID    uint64
	Train uint64
}

// SharedSeenSince appends to dst[:0] the catalogued fingerprints with a
// shared-data class, first seen before firstBefore and last seen at or
// after seenSince, ordered by id, with their running train-scope counts. It
// copies no text and reads no counts from the cache, so it is cheap enough
// to call every bucket over a full catalogue.
func (s *Store) SharedSeenSince(seenSince, firstBefore int64, dst []SeenCount) []SeenCount {
	dst = dst[:0]
	c := s.cat
	c.mu.RLock()
	for e := c.lru.next; e != &c.lru; e = e.next {
		if e.shared != event.SharedNone && e.last >= seenSince && e.first < firstBefore {
			dst = append(dst, SeenCount{ID: e.id, Train: e.scopes[event.ScopeTrain]})
		}
	}
	c.mu.RUnlock()
	slices.SortFunc(dst, func(a, b SeenCount) int { return cmp.Compare(a.ID, b.ID) })
	return dst
}

// FirstSeenAfter appends to dst[:0] the catalogue entries first seen at or
// after t, ordered by first seen then ID.
func (s *Store) FirstSeenAfter(t int64, dst []FingerprintInfo) []FingerprintInfo {
	return s.cat.filter(dst, func(e *entry) bool { return e.first >= t })
}
