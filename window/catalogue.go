package window

import (
	"cmp"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

const (
	maxVersions = 8  // versions remembered per fingerprint: the most recent distinct ones
	maxWikis    = 64 // wikis remembered per fingerprint: the first ones
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
	scopes      [ingest.NumScopes]uint64
	text        string // the Detail fields, contiguous; field i is text[offs[i]:offs[i+1]]
	textCap     int    // bytes allocated for text (its size class)
	offs        [numText + 1]uint16
	hasText     bool
	shared      ingest.SharedClass
	nver, vpos  uint8
	versions    [maxVersions]uint32
	wikis       []wikimap.ID
	size        int64 // bytes accounted for this entry
	prev, next  *entry
}

func (e *entry) field(i int) string { return e.text[e.offs[i]:e.offs[i+1]] }

func (e *entry) accounted() int64 {
	return entryOverhead + int64(e.textCap) + int64(cap(e.wikis))*int64(unsafe.Sizeof(wikimap.ID(0)))
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

	// table holds fingerprints whose entry has its text, so Writers copy
	// Detail bytes only for the others. Two candidate slots per
	// fingerprint; a displaced fingerprint only costs a redundant copy.
	table []atomic.Uint64
	mask  uint64

	versions *ingest.Interner
}

func newCatalogue(maxEntries int, maxBytes int64, versions *ingest.Interner) *catalogue {
	n := 1024
	for n < 2*maxEntries && n < 1<<22 {
		n <<= 1
	}
	c := &catalogue{
		m:          make(map[uint64]*entry),
		maxEntries: maxEntries,
		maxBytes:   maxBytes,
		table:      make([]atomic.Uint64, n),
		mask:       uint64(n - 1),
		versions:   versions,
	}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

func (c *catalogue) slots(fp uint64) (i1, i2 uint64) {
	return fp & c.mask, bits.RotateLeft64(fp, 32) & c.mask
}

// known reports whether fp's entry has its text. Lock-free: Writers call it
// per error event.
func (c *catalogue) known(fp uint64) bool {
	if fp == 0 {
		return false
	}
	i1, i2 := c.slots(fp)
	return c.table[i1].Load() == fp || c.table[i2].Load() == fp
}

func (c *catalogue) setKnown(fp uint64) {
	if fp == 0 || c.known(fp) {
		return
	}
	i1, i2 := c.slots(fp)
	if c.table[i1].Load() != 0 && c.table[i2].Load() == 0 {
		c.table[i2].Store(fp)
		return
	}
	c.table[i1].Store(fp)
}

func (c *catalogue) forget(fp uint64) {
	i1, i2 := c.slots(fp)
	c.table[i1].CompareAndSwap(fp, 0)
	c.table[i2].CompareAndSwap(fp, 0)
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
		if e.shared == ingest.SharedNone {
			e.shared = ev.Shared
		}
		if ev.Version != 0 {
			e.addVersion(ev.Version)
		}
		if len(e.wikis) < maxWikis && !slices.Contains(e.wikis, ev.Wiki) {
			e.wikis = append(e.wikis, ev.Wiki)
		}
		if !e.hasText && it.det >= 0 {
			text, offs := b.text(it.det)
			e.text, e.textCap = newText(text)
			e.offs, e.hasText = offs, true
			c.setKnown(e.id)
		}
		if sz := e.accounted(); sz != e.size {
			c.bytes += sz - e.size
			e.size = sz
		}
		c.evict(e)
	}
}

func (e *entry) addVersion(v uint32) {
	for _, x := range e.versions[:e.nver] {
		if x == v {
			return
		}
	}
	if e.nver < maxVersions {
		e.versions[e.nver] = v
		e.nver++
		return
	}
	e.versions[e.vpos] = v
	e.vpos = (e.vpos + 1) % maxVersions
}

func (c *catalogue) insert(fp uint64, t int64) *entry {
	e := c.spare
	c.spare = nil
	if e == nil {
		e = &entry{}
	} else {
		*e = entry{wikis: e.wikis[:0]}
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
		Wikis:     slices.Clone(e.wikis),
	}
	if e.hasText {
		fi.Message, fi.Exemplar, fi.Class = e.field(txtMessage), e.field(txtExemplar), e.field(txtClass)
		fi.Channel, fi.File, fi.Frame, fi.Trace = e.field(txtChannel), e.field(txtFile), e.field(txtFrame), e.field(txtTrace)
	}
	if e.nver > 0 {
		fi.Versions = make([]string, 0, e.nver)
		start := 0
		if e.nver == maxVersions {
			start = int(e.vpos) // oldest of a full ring
		}
		for k := range int(e.nver) {
			fi.Versions = append(fi.Versions, c.versions.String(e.versions[(start+k)%int(e.nver)]))
		}
	}
	return fi
}

func (c *catalogue) size() (entries int, bytes, evictions int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m), c.bytes, c.evictions.Load()
}
