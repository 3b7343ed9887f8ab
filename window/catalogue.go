package window

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// What an entry keeps does not depend on the order its events are applied
// in (shards update the catalogue concurrently), so that a replay of the
// same records gives the same findings: the text is the earliest
// occurrence's (smallest text hash on a tie), the shared-data class the
// earliest classified occurrence's, the versions the most recently seen
// ones and the wikis those first seen. Only eviction under the caps, which
// follows recency of application, can still differ between runs.
const (
	maxVersions = 8  // versions remembered per fingerprint: the most recently seen distinct ones
	maxWikis    = 64 // wikis remembered per fingerprint: the first seen ones
	// mapSlotBytes approximates a Go map slot holding a uint64 key and a
	// pointer, with its control byte and load-factor slack.
	mapSlotBytes = 32
	// entryOverhead is what an entry costs on the heap besides its text
	// and wikis; TestCatalogueAccounting checks it against MemStats.
	entryOverhead = int64(unsafe.Sizeof(entry{})) + mapSlotBytes
)

// entry is one fingerprint of the catalogue, linked into its LRU list.
type entry struct {
	id          uint64
	first, last int64
	count       uint64
	scopes      [event.NumScopes]uint64
	text        string // the Detail fields, contiguous; field i is text[offs[i]:offs[i+1]]
	textCap     int    // bytes allocated for text (its size class)
	textAt      int64  // event time of the occurrence text comes from
	textHash    uint64 // xxhash of text, the tie-break between occurrences at textAt
	offs        [numText + 1]uint16
	hasText     bool
	shared      event.SharedClass
	sharedAt    int64 // event time of the occurrence shared comes from
	nver        uint8
	versions    [maxVersions]uint32
	verLast     [maxVersions]int64 // last seen, per version
	wikis       []wikimap.ID
	wikiAt      []int64 // first seen, per wiki
	size        int64   // bytes accounted for this entry
	prev, next  *entry
}

func (e *entry) field(i int) string { return e.text[e.offs[i]:e.offs[i+1]] }

func (e *entry) accounted() int64 {
	return entryOverhead + int64(e.textCap) + int64(cap(e.wikis))*int64(unsafe.Sizeof(wikimap.ID(0))) + int64(cap(e.wikiAt))*8
}

// newText copies b into a string and returns the bytes the allocation
// takes: append rounds the capacity up to the allocator's size class, which
// for multi-KiB traces is up to an eighth more than the length.
func newText(b []byte) (string, int) {
	if len(b) == 0 {
		return "", 0
	}
	buf := append([]byte(nil), b...)
	// buf is never written again, so viewing it as a string is safe.
	return unsafe.String(unsafe.SliceData(buf), len(buf)), cap(buf)
}

// catalogue is the bounded set of fingerprints, capped in entries and bytes,
// evicting the least recently seen. Shard owners update it once per batch
// under mu; Writers consult only the lock-free known table.
type catalogue struct {
	mu         sync.RWMutex
	m          map[uint64]*entry
	lru        entry // sentinel: lru.next is the most recently seen
	bytes      int64
	maxEntries int
	maxBytes   int64
	evictions  atomic.Int64
	spare      *entry // last evicted entry, reused by the next insert

	// table holds fingerprints whose entry has its text, and times the
	// event time of that text, so Writers copy Detail bytes only for the
	// others and for occurrences at or before it (which could replace it).
	// Two candidate slots per fingerprint; a displaced fingerprint only
	// costs a redundant copy.
	table []atomic.Uint64
	times []atomic.Int64
	mask  uint64

	versions *event.Interner
}

func newCatalogue(maxEntries int, maxBytes int64, versions *event.Interner) *catalogue {
	n := 1024
	for n < 2*maxEntries && n < 1<<22 {
		n <<= 1
	}
	c := &catalogue{
		m:          make(map[uint64]*entry),
		maxEntries: maxEntries,
		maxBytes:   maxBytes,
		table:      make([]atomic.Uint64, n),
		times:      make([]atomic.Int64, n),
		mask:       uint64(n - 1),
		versions:   versions,
	}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

// update applies the error events b.items[errs] to the catalogue.
func (c *catalogue) update(b *batch, errs []int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, i := range errs {
		it := &b.items[i]
		ev := &it.ev
		e := c.m[ev.Fingerprint]
		if e == nil {
			e = c.insert(ev.Fingerprint, ev.Time)
		} else {
			c.unlink(e)
			c.pushFront(e)
		}
		e.first, e.last = min(e.first, ev.Time), max(e.last, ev.Time)
		e.count++
		e.scopes[ev.Scope]++
		if ev.Shared != event.SharedNone && (e.shared == event.SharedNone || ev.Time < e.sharedAt ||
			ev.Time == e.sharedAt && ev.Shared < e.shared) {
			e.shared, e.sharedAt = ev.Shared, ev.Time
		}
		if ev.Version != 0 {
			c.addVersion(e, ev.Version, ev.Time)
		}
		e.addWiki(ev.Wiki, ev.Time)
		if it.det >= 0 && (!e.hasText || ev.Time <= e.textAt) {
			text, offs := b.text(it.det)
			h := xxhash.Sum64(text)
			if !e.hasText || ev.Time < e.textAt || h < e.textHash {
				e.text, e.textCap = newText(text)
				e.offs, e.hasText = offs, true
				e.textAt, e.textHash = ev.Time, h
				c.setKnown(e.id, ev.Time)
			}
		}
		if sz := e.accounted(); sz != e.size {
			c.bytes += sz - e.size
			e.size = sz
		}
		c.evict(e)
	}
}

// addVersion notes version v seen at t. A full list keeps the versions
// seen most recently (ties: the greater string, as interned ids depend on
// the order decoders met them): whatever the order of the events, that is
// the maxVersions greatest (last seen, version) pairs.
func (c *catalogue) addVersion(e *entry, v uint32, t int64) {
	for i, x := range e.versions[:e.nver] {
		if x == v {
			e.verLast[i] = max(e.verLast[i], t)
			return
		}
	}
	if e.nver < maxVersions {
		e.versions[e.nver], e.verLast[e.nver] = v, t
		e.nver++
		return
	}
	lo := 0
	for i := 1; i < maxVersions; i++ {
		if c.versionLess(e.versions[i], e.verLast[i], e.versions[lo], e.verLast[lo]) {
			lo = i
		}
	}
	if c.versionLess(e.versions[lo], e.verLast[lo], v, t) {
		e.versions[lo], e.verLast[lo] = v, t
	}
}

// versionLess orders (last seen, version string) pairs.
func (c *catalogue) versionLess(a uint32, at int64, b uint32, bt int64) bool {
	if at != bt {
		return at < bt
	}
	return c.versions.String(a) < c.versions.String(b)
}

// addWiki notes wiki w seen at t. A full list keeps the wikis first seen
// earliest (ties: the smaller id): whatever the order of the events, that is
// the maxWikis smallest (first seen, wiki) pairs.
func (e *entry) addWiki(w wikimap.ID, t int64) {
	if i := slices.Index(e.wikis, w); i >= 0 {
		e.wikiAt[i] = min(e.wikiAt[i], t)
		return
	}
	if len(e.wikis) < maxWikis {
		e.wikis = append(e.wikis, w)
		e.wikiAt = append(e.wikiAt, t)
		return
	}
	hi := 0
	for i := 1; i < len(e.wikis); i++ {
		if wikiLess(e.wikiAt[hi], e.wikis[hi], e.wikiAt[i], e.wikis[i]) {
			hi = i
		}
	}
	if wikiLess(t, w, e.wikiAt[hi], e.wikis[hi]) {
		e.wikis[hi], e.wikiAt[hi] = w, t
	}
}

func wikiLess(at int64, a wikimap.ID, bt int64, b wikimap.ID) bool {
	return at < bt || at == bt && a < b
}

func (c *catalogue) insert(fp uint64, t int64) *entry {
	e := c.spare
	c.spare = nil
	if e == nil {
		e = &entry{}
	} else {
		*e = entry{wikis: e.wikis[:0], wikiAt: e.wikiAt[:0]}
	}
	e.id, e.first, e.last = fp, t, t
	e.size = e.accounted()
	c.bytes += e.size
	c.m[fp] = e
	c.pushFront(e)
	return e
}

// evict removes least recently seen entries while the catalogue is over a
// cap, never keep itself.
func (c *catalogue) evict(keep *entry) {
	for len(c.m) > c.maxEntries || c.bytes > c.maxBytes {
		e := c.lru.prev
		if e == keep || e == &c.lru {
			return
		}
		c.unlink(e)
		delete(c.m, e.id)
		c.bytes -= e.size
		c.forget(e.id)
		c.evictions.Add(1)
		e.text, e.textCap = "", 0
		c.spare = e
	}
}

func (c *catalogue) pushFront(e *entry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}

func (c *catalogue) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *catalogue) get(fp uint64) (FingerprintInfo, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.m[fp]
	if e == nil {
		return FingerprintInfo{}, false
	}
	return c.info(e), true
}

// filter appends to dst[:0] the entries keep accepts, ordered by first seen
// then ID.
func (c *catalogue) filter(dst []FingerprintInfo, keep func(*entry) bool) []FingerprintInfo {
	dst = dst[:0]
	c.mu.RLock()
	for e := c.lru.next; e != &c.lru; e = e.next {
		if keep(e) {
			dst = append(dst, c.info(e))
		}
	}
	c.mu.RUnlock()
	slices.SortFunc(dst, func(a, b FingerprintInfo) int {
		return cmp.Or(cmp.Compare(a.FirstSeen, b.FirstSeen), cmp.Compare(a.ID, b.ID))
	})
	return dst
}

// info copies e out; the caller holds mu.
func (c *catalogue) info(e *entry) FingerprintInfo {
	fi := FingerprintInfo{
		ID:        e.id,
		FirstSeen: e.first,
		LastSeen:  e.last,
		Count:     e.count,
		Shared:    e.shared,
		Scopes:    e.scopes,
		Wikis:     e.sortedWikis(),
	}
	if e.hasText {
		fi.Message, fi.Exemplar, fi.Class = e.field(txtMessage), e.field(txtExemplar), e.field(txtClass)
		fi.Channel, fi.File, fi.Frame, fi.Trace = e.field(txtChannel), e.field(txtFile), e.field(txtFrame), e.field(txtTrace)
	}
	if e.nver > 0 {
		idx := make([]int, e.nver)
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(i, j int) int {
			if c.versionLess(e.versions[i], e.verLast[i], e.versions[j], e.verLast[j]) {
				return -1
			}
			return 1 // distinct versions never compare equal
		})
		fi.Versions = make([]string, 0, e.nver)
		for _, i := range idx {
			fi.Versions = append(fi.Versions, c.versions.String(e.versions[i]))
		}
	}
	return fi
}

// sortedWikis returns the wikis in the order they were first seen (ties:
// by id).
func (e *entry) sortedWikis() []wikimap.ID {
	idx := make([]int, len(e.wikis))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int {
		return cmp.Or(cmp.Compare(e.wikiAt[i], e.wikiAt[j]), cmp.Compare(e.wikis[i], e.wikis[j]))
	})
	out := make([]wikimap.ID, len(idx))
	for k, i := range idx {
		out[k] = e.wikis[i]
	}
	return out
}

func (c *catalogue) size() (entries int, bytes, evictions int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m), c.bytes, c.evictions.Load()
}
