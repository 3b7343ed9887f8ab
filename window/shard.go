package window

import (
	"sync"
	"unsafe"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// cell is one (wiki, scope, bucket) of the ring. uint32 holds 429 million
// events per second in a 10-s bucket: far above any wiki.
type cell struct {
	requests, status5xx, errors, shared uint32
	errReqs                             uint32 // distinct requests whose first error fell in this bucket
}

const cellSize = unsafe.Sizeof(cell{})

// shard owns the wikis with ID % Shards == index: their ring of counters,
// their fingerprint counts (fastcache plus a write-combining buffer) and
// their view of the deploy timeline. Only the owner goroutine writes it,
// holding mu; readers hold mu shared.
type shard struct {
	s     *Store
	index int
	ch    chan *batch

	mu sync.RWMutex
	// cells[((w/Shards)*NumScopes+scope)*slots + slot]
	cells []cell
	// slotBucket[slot] is the bucket number the slot holds for every wiki
	// of the shard. A slot is zeroed when a newer bucket claims it, and a
	// read checks it, so a stale slot is never taken for a current one.
	slotBucket []int64
	newest     int64 // newest event time this shard has applied or seen published

	fpCounts // fingerprint counts
	seen     seenSet
	reqs     reqSet      // requests already counted, for the distinct counts
	debug    []debugCell // by local wiki index: the debug release's traffic, kept out of the cells

	// scratch reused by the owner across batches
	errIdx  []int32
	reports []seenReport
}

func newShard(s *Store, index int) *shard {
	local := s.nWikis/s.cfg.Shards + 1
	sh := &shard{
		s:          s,
		index:      index,
		ch:         make(chan *batch, shardQueue),
		cells:      make([]cell, local*event.NumScopes*int(s.slots)),
		slotBucket: make([]int64, s.slots),
	}
	for i := range sh.slotBucket {
		sh.slotBucket[i] = noBucket
	}
	sh.fpCounts.init(s, index)
	sh.seen.init(maxSeenPerShard)
	sh.reqs.init()
	sh.debug = make([]debugCell, local)
	return sh
}

// noBucket marks a slot that holds no bucket yet.
const noBucket = -1 << 63

func (sh *shard) run() {
	defer sh.s.wg.Done()
	for b := range sh.ch {
		if b.done != nil {
			close(b.done)
			continue
		}
		sh.apply(b)
		sh.s.putBatch(b)
	}
	// Release buffered fingerprint counts: nothing reads them after Close.
	sh.mu.Lock()
	sh.dropPending()
	sh.mu.Unlock()
}

// applyState is what applying a run of events accumulates before it is
// published.
type applyState struct {
	newest, head int64
	added        [maxSections * event.NumScopes * 2]int64 // by addedIndex
	dropped      [numDropReasons]int64
	errs         []int32 // indexes of the accepted errors, for the catalogue
	reports      []seenReport
}

// apply adds a batch of events to the shard. It runs on the owner goroutine.
func (sh *shard) apply(b *batch) {
	sh.mu.Lock()
	st := sh.begin()
	for i := range b.items {
		sh.applyOne(&b.items[i], int32(i), &st)
	}
	sh.newest = st.newest
	sh.mu.Unlock()
	sh.end(&st, b)
}

// begin starts applying events; the caller holds mu.
func (sh *shard) begin() applyState {
	newest := max(sh.s.newest.Load(), sh.newest)
	sh.closeBuckets(newest)
	return applyState{newest: newest, head: floorDiv(newest, sh.s.width), errs: sh.errIdx[:0], reports: sh.reports[:0]}
}

// applyOne adds one event, the i-th of its batch; the caller holds mu.
func (sh *shard) applyOne(it *item, i int32, st *applyState) {
	s := sh.s
	ev := &it.ev
	if ev.Wiki == 0 || int(ev.Wiki) > s.nWikis || ev.Scope >= event.NumScopes ||
		(ev.Kind != event.KindRequest && ev.Kind != event.KindError) {
		st.dropped[dropInvalid]++
		return
	}
	t := ev.Time
	if t <= 0 {
		st.dropped[dropTooOld]++
		return
	}
	if t > st.newest {
		if st.newest != 0 && t-st.newest > s.length {
			st.dropped[dropTooNew]++
			return
		}
		st.newest = t
		st.head = floorDiv(t, s.width)
		sh.closeBuckets(t)
	}
	bk := floorDiv(t, s.width)
	if bk <= st.head-s.slots {
		st.dropped[dropTooOld]++
		return
	}
	slot := bk % s.slots
	if held := sh.slotBucket[slot]; held != bk {
		if held > bk { // unreachable while bk > head-slots; kept as a guard
			st.dropped[dropTooOld]++
			return
		}
		sh.resetSlot(slot, bk)
	}
	if ev.Scope == event.ScopePretrain && ev.Role == event.RoleDebug {
		// mw-pretrain's debug release serves whatever wiki a developer
		// sends it with the debug header: chosen on purpose, so it is in
		// no wiki's statistics and no deploy's timeline, only counted.
		dc := &sh.debug[int64(ev.Wiki)/int64(len(s.shards))]
		if ev.Kind == event.KindRequest {
			dc.requests++
		} else {
			dc.errors++
		}
		dc.last = max(dc.last, t)
		return
	}
	c := &sh.cells[((int64(ev.Wiki)/int64(len(s.shards)))*event.NumScopes+int64(ev.Scope))*s.slots+slot]
	if ev.Kind == event.KindRequest {
		c.requests++
		if ev.Status >= 500 && ev.Status < 600 {
			c.status5xx++
		}
		st.added[addedIndex(s.sectionOf[ev.Wiki], ev.Scope, 0)]++
	} else {
		c.errors++
		if ev.Shared != event.SharedNone {
			c.shared++
		}
		st.added[addedIndex(s.sectionOf[ev.Wiki], ev.Scope, 1)]++
		// A request counts once among the erroring requests of its
		// (wiki, scope), and once per fingerprint, whatever the number of
		// lines and buckets; an error without a reqId counts each time.
		firstErr, firstFp := true, true
		if it.req != 0 {
			firstErr = sh.reqs.firstSighting(mix64(it.req^uint64(ev.Wiki)<<1^uint64(ev.Scope)), bk)
			firstFp = sh.reqs.firstSighting(mix64(it.req^mix64(ev.Fingerprint^uint64(ev.Scope))), bk)
		}
		if firstErr {
			c.errReqs++
		}
		sh.countFingerprint(ev, firstFp, s.sectionOf[ev.Wiki], bk)
		st.errs = append(st.errs, i)
	}
	st.reports = sh.noteDeploy(ev, st.reports)
}

// end publishes what begin and applyOne accumulated; the caller has set
// sh.newest and released mu. b holds the items st.errs indexes.
func (sh *shard) end(st *applyState, b *batch) {
	s := sh.s
	for {
		cur := s.newest.Load()
		if st.newest <= cur || s.newest.CompareAndSwap(cur, st.newest) {
			break
		}
	}
	for k, n := range st.added {
		if n != 0 {
			s.added[k].Add(n)
		}
	}
	for r, n := range st.dropped {
		if n != 0 {
			s.dropped[r].Add(n)
		}
	}
	if len(st.errs) > 0 {
		s.cat.update(b, st.errs)
	}
	if len(st.reports) > 0 {
		s.tl.report(st.reports)
	}
	sh.errIdx, sh.reports = st.errs[:0], st.reports[:0]
}

// resetSlot zeroes slot for every wiki and scope of the shard and makes it
// hold bucket bk.
func (sh *shard) resetSlot(slot, bk int64) {
	slots := sh.s.slots
	for i := slot; i < int64(len(sh.cells)); i += slots {
		sh.cells[i] = cell{}
	}
	sh.slotBucket[slot] = bk
}

// sum adds wiki w's counters in scope sc over buckets [b0, b1) to c. The
// caller holds mu and has clipped the range to the ring.
func (sh *shard) sum(w wikimap.ID, sc event.Scope, b0, b1 int64, c *Counts) {
	slots := sh.s.slots
	base := ((int64(w)/int64(len(sh.s.shards)))*event.NumScopes + int64(sc)) * slots
	slot := (b0%slots + slots) % slots
	cells := sh.cells[base : base+slots]
	for b := b0; b < b1; b++ {
		if sh.slotBucket[slot] == b {
			x := &cells[slot]
			c.Requests += int64(x.requests)
			c.Status5xx += int64(x.status5xx)
			c.Errors += int64(x.errors)
			c.SharedErrors += int64(x.shared)
			c.ErrorRequests += int64(x.errReqs)
		}
		if slot++; slot == slots {
			slot = 0
		}
	}
}

// noteDeploy records the version and rollout an event shows, appending to
// reports what the shared timeline must learn.
func (sh *shard) noteDeploy(ev *event.Event, reports []seenReport) []seenReport {
	if ev.Version != 0 {
		var g uint8
		if ev.Scope == event.ScopeTrain {
			g = sh.s.groupOf[ev.Wiki]
		}
		reports = sh.seen.note(seenKey(seenVersion, ev.Scope, g, ev.Version), ev.Time, reports)
	}
	// Jobrunner pods log only when a job fails, so their new rollout can
	// first show long after the deploy that made it and would look like a
	// deploy of its own: the serving releases date a deploy.
	if ev.Rollout != 0 && ev.Role != event.RoleJobrunner {
		reports = sh.seen.note(seenKey(seenRollout, ev.Scope, 0, ev.Rollout), ev.Time, reports)
	}
	return reports
}

// debugCell is one wiki's traffic through mw-pretrain's debug release.
type debugCell struct {
	requests, errors int64
	last             int64 // event time of the newest, Unix ns
}
