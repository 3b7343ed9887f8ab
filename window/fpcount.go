package window

import (
	"encoding/binary"
	"math"

	"github.com/VictoriaMetrics/fastcache"
	"github.com/wikimedia/pretrain-detector/event"
)

// Fingerprint counts live in fastcache under two keys per (fingerprint,
// scope, bucket): one per wiki, and one per shard summing the shard's
// wikis, which also carries the distinct-request estimate. The per-shard key
// keeps the all-wiki total cheap (Shards reads per bucket) while every key
// has exactly one writer, the shard's owner, as fastcache's Get+Set needs.
//
// fastcache appends every Set to a ring and overwrites nothing in place, so
// a Get+Set per event would fill 64 MiB within minutes at a thousand errors
// a second and silently evict counts the 2-h ring still needs. Each shard
// therefore combines the writes of its open buckets (newer than the
// watermark) in small maps and writes a key once, when its bucket closes;
// late events for closed buckets go straight to fastcache.

const (
	tagWiki byte = 1
	tagAll  byte = 2
	keyLen       = 1 + 8 + 8 + 2 + 1

	tagSect     byte = 3
	allValLen        = 4 + 4
	maxPending       = 1 << 14 // keys per pending map before it is written out early
	maxSections      = 64      // DB sections with their own keys and counters; more are refused at start

)

// fpKey names one count. sub is the wiki ID for per-wiki keys, the shard
// index for all-wiki keys, and section×maxShards+shard for per-section keys.
type fpKey struct {
	fp     uint64
	bucket int64
	sub    uint16
	scope  event.Scope
}

// allVal is an all-wiki count with its distinct-request count: an
// occurrence is distinct when the shard's reqSet has not seen its
// (fingerprint, scope, request) before, in any bucket.
type allVal struct {
	count, distinct uint32
}

func (v *allVal) encode(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, v.count)
	return binary.BigEndian.AppendUint32(dst, v.distinct)
}

func decodeAll(b []byte) allVal {
	var v allVal
	if len(b) != allValLen {
		return v
	}
	v.count = binary.BigEndian.Uint32(b)
	v.distinct = binary.BigEndian.Uint32(b[4:])
	return v
}

func encodeKey(dst *[keyLen]byte, tag byte, k fpKey) []byte {
	dst[0] = tag
	binary.BigEndian.PutUint64(dst[1:], k.fp)
	binary.BigEndian.PutUint64(dst[9:], uint64(k.bucket))
	binary.BigEndian.PutUint16(dst[17:], k.sub)
	dst[19] = byte(k.scope)
	return dst[:]
}

// fpCounts is a shard's part of the fingerprint counts. A pending entry,
// when present, is the key's complete value (it starts from what fastcache
// held), so a read looks in the pending maps first and in fastcache second.
// The maps hold indexes into value slices so that counting an event costs
// one map lookup per key, not a lookup and an assignment.
type fpCounts struct {
	cache    *fastcache.Cache
	width    int64
	lateness int64
	shardIdx uint16

	pendWiki    map[fpKey]int32 // index into wikiVals
	pendSect    map[fpKey]int32 // index into wikiVals
	pendAll     map[fpKey]int32 // index into allVals
	wikiVals    []uint32
	allVals     []allVal
	freeWiki    []int32 // free indexes of wikiVals
	freeAll     []int32
	pendMin     int64 // smallest bucket pending; MaxInt64 when none
	flushBefore int64 // buckets below this are closed

	kbuf [keyLen]byte
	vbuf []byte
}

func (f *fpCounts) init(s *Store, index int) {
	f.cache = s.cache
	f.width, f.lateness = s.width, s.lateness
	f.shardIdx = uint16(index)
	f.pendWiki = make(map[fpKey]int32)
	f.pendSect = make(map[fpKey]int32)
	f.pendAll = make(map[fpKey]int32)
	f.pendMin = math.MaxInt64
	f.flushBefore = math.MinInt64
	f.vbuf = make([]byte, 0, 64)
}

// countFingerprint counts an accepted error event in bucket bk; distinct
// says its (fingerprint, scope, request) was not counted before. Owner only.
func (f *fpCounts) countFingerprint(ev *event.Event, distinct bool, sect uint8, bk int64) {
	kw := fpKey{fp: ev.Fingerprint, bucket: bk, sub: uint16(ev.Wiki), scope: ev.Scope}
	ka := fpKey{fp: ev.Fingerprint, bucket: bk, sub: f.shardIdx, scope: ev.Scope}
	ks := fpKey{fp: ev.Fingerprint, bucket: bk, sub: uint16(sect)*maxShards + f.shardIdx, scope: ev.Scope}
	var d uint32
	if distinct {
		d = 1
	}
	if bk < f.flushBefore {
		f.storeWiki(tagWiki, kw, f.loadWiki(tagWiki, kw)+1)
		f.storeWiki(tagSect, ks, f.loadWiki(tagSect, ks)+1)
		v := f.loadAll(ka)
		v.count++
		v.distinct += d
		f.storeAll(ka, v)
		return
	}
	i, ok := f.pendWiki[kw]
	if !ok {
		i = f.newWiki(f.loadWiki(tagWiki, kw))
		f.pendWiki[kw] = i
	}
	f.wikiVals[i]++
	i, ok = f.pendSect[ks]
	if !ok {
		i = f.newWiki(f.loadWiki(tagSect, ks))
		f.pendSect[ks] = i
	}
	f.wikiVals[i]++
	j, ok := f.pendAll[ka]
	if !ok {
		j = f.newAll(f.loadAll(ka))
		f.pendAll[ka] = j
	}
	f.allVals[j].count++
	f.allVals[j].distinct += d
	f.pendMin = min(f.pendMin, bk)
	if len(f.pendWiki) >= maxPending || len(f.pendAll) >= maxPending || len(f.pendSect) >= maxPending {
		f.flushPending(math.MaxInt64)
	}
}

func (f *fpCounts) newWiki(v uint32) int32 {
	if n := len(f.freeWiki); n > 0 {
		i := f.freeWiki[n-1]
		f.freeWiki = f.freeWiki[:n-1]
		f.wikiVals[i] = v
		return i
	}
	f.wikiVals = append(f.wikiVals, v)
	return int32(len(f.wikiVals) - 1)
}

func (f *fpCounts) newAll(v allVal) int32 {
	if n := len(f.freeAll); n > 0 {
		i := f.freeAll[n-1]
		f.freeAll = f.freeAll[:n-1]
		f.allVals[i] = v
		return i
	}
	f.allVals = append(f.allVals, v)
	return int32(len(f.allVals) - 1)
}

// closeBuckets writes out the pending counts of buckets that ended at or
// before the watermark of newest. Owner only; cheap when nothing closes.
func (f *fpCounts) closeBuckets(newest int64) {
	fb := floorDiv(newest-f.lateness, f.width)
	if fb <= f.flushBefore {
		return
	}
	f.flushBefore = fb
	if f.pendMin < fb {
		f.flushPending(fb)
	}
}

// flushPending writes the pending keys of buckets below before to fastcache.
func (f *fpCounts) flushPending(before int64) {
	lowest := int64(math.MaxInt64)
	for _, pm := range [...]struct {
		tag byte
		m   map[fpKey]int32
	}{{tagWiki, f.pendWiki}, {tagSect, f.pendSect}} {
		for k, i := range pm.m {
			if k.bucket < before {
				f.storeWiki(pm.tag, k, f.wikiVals[i])
				delete(pm.m, k)
				f.freeWiki = append(f.freeWiki, i)
			} else {
				lowest = min(lowest, k.bucket)
			}
		}
	}
	for k, j := range f.pendAll {
		if k.bucket < before {
			f.storeAll(k, f.allVals[j])
			delete(f.pendAll, k)
			f.freeAll = append(f.freeAll, j)
		} else {
			lowest = min(lowest, k.bucket)
		}
	}
	f.pendMin = lowest
}

// pendingKeys is the number of keys buffered.
func (f *fpCounts) pendingKeys() int { return len(f.pendWiki) + len(f.pendAll) + len(f.pendSect) }

// dropPending forgets every buffered count.
func (f *fpCounts) dropPending() {
	clear(f.pendWiki)
	clear(f.pendAll)
	clear(f.pendSect)
	f.wikiVals, f.allVals, f.freeWiki, f.freeAll = nil, nil, nil, nil
	f.pendMin = math.MaxInt64
}

func (f *fpCounts) loadWiki(tag byte, k fpKey) uint32 {
	f.vbuf = f.cache.Get(f.vbuf[:0], encodeKey(&f.kbuf, tag, k))
	if len(f.vbuf) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(f.vbuf)
}

func (f *fpCounts) storeWiki(tag byte, k fpKey, n uint32) {
	f.vbuf = binary.BigEndian.AppendUint32(f.vbuf[:0], n)
	f.cache.Set(encodeKey(&f.kbuf, tag, k), f.vbuf)
}

func (f *fpCounts) loadAll(k fpKey) allVal {
	f.vbuf = f.cache.Get(f.vbuf[:0], encodeKey(&f.kbuf, tagAll, k))
	return decodeAll(f.vbuf)
}

func (f *fpCounts) storeAll(k fpKey, v allVal) {
	f.vbuf = v.encode(f.vbuf[:0])
	f.cache.Set(encodeKey(&f.kbuf, tagAll, k), f.vbuf)
}

// wikiCount reads a per-wiki count. Readers hold the shard's lock shared, so
// they use their own buffers.
func (f *fpCounts) wikiCount(k fpKey) uint32 { return f.count32(tagWiki, f.pendWiki, k) }

// sectCount reads a per-section count of one shard.
func (f *fpCounts) sectCount(k fpKey) uint32 { return f.count32(tagSect, f.pendSect, k) }

func (f *fpCounts) count32(tag byte, pend map[fpKey]int32, k fpKey) uint32 {
	if i, ok := pend[k]; ok {
		return f.wikiVals[i]
	}
	var kb [keyLen]byte
	var vb [8]byte
	v := f.cache.Get(vb[:0], encodeKey(&kb, tag, k))
	if len(v) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

// allCount reads an all-wiki count of one shard.
func (f *fpCounts) allCount(k fpKey) allVal {
	if j, ok := f.pendAll[k]; ok {
		return f.allVals[j]
	}
	var kb [keyLen]byte
	var vb [allValLen]byte
	return decodeAll(f.cache.Get(vb[:0], encodeKey(&kb, tagAll, k)))
}
