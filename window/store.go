package window

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/VictoriaMetrics/fastcache"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Sizes of the hand-off between Writers and shards.
const (
	batchEvents   = 512      // events per batch handed to a shard
	batchArenaMax = 64 << 10 // a batch is sent early once its copied details reach this
	shardQueue    = 16       // batches queued per shard before Writers block (backpressure)
	arenaKeep     = 1 << 20  // a recycled batch drops an arena grown past this
)

// Drop reasons, the label values of detector_window_events_dropped_total.
const (
	dropTooOld = iota
	dropTooNew
	dropInvalid // wiki outside the map, scope or kind out of range: an ingest bug, never expected
	numDropReasons
)

func dropReasonName(r int) string {
	switch r {
	case dropTooOld:
		return "too_old"
	case dropTooNew:
		return "too_new"
	default:
		return "invalid"
	}
}

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("window store closed")

// Store is the window. Ingest goroutines write through Writers; detect reads
// through the Store's methods, which are safe for concurrent use.
//
// Layout: wikis are sharded by ID % Shards. Each shard has one owner
// goroutine that applies batches of events to the shard's ring of bucket
// counters and to the fingerprint counts in fastcache, so no lock is taken
// per event and fastcache's non-atomic Get+Set is safe. The owner holds the
// shard's RWMutex for the length of a batch; readers take it shared. The
// fingerprint catalogue and the deploy timeline are shared by all shards and
// updated once per batch.
//
// The design was chosen by BenchmarkDesign (request events, 1000 wikis,
// 2-core VM, medians of 6 runs, CPU time of all goroutines per event):
// owner goroutines 60 ns with one Writer and 45 ns with two; a per-shard
// mutex taken per event 84 and 100 ns; atomic counters 44 and 47 ns, but
// they lose increments racing a slot reset and leave fastcache's Get+Set
// without a single owner.
type Store struct {
	cfg      Config
	width    int64 // bucket width, ns
	length   int64 // ring length, ns
	lateness int64
	slots    int64 // buckets in the ring
	merge    int64 // rollout merge window, ns

	nWikis     int
	groupOf    []uint8  // train group index by wiki ID; 0 is "no group"
	groupNames []string // by group index; groupNames[0] == ""
	sectionOf  []uint8  // DB section index by wiki ID
	sections   []string // by section index, sorted: per-section fingerprint counts and counter labels

	versions, rollouts *event.Interner

	cache  *fastcache.Cache
	shards []*shard
	cat    *catalogue
	tl     *timeline

	pool sync.Pool // *batch

	newest atomic.Int64 // newest accepted event time, ns; 0 before any

	closeMu sync.RWMutex // held shared while sending to shard channels, exclusively by Close
	closed  bool
	wg      sync.WaitGroup

	writers atomic.Int64 // Writers created, for the memory bound
	// added counts applied events by section, scope and kind (see addedIndex).
	// Shards count into their applyState and publish here once per batch.
	added   [maxSections * event.NumScopes * 2]atomic.Int64
	dropped [numDropReasons]atomic.Int64
}

// noSection is the section label of wikis whose section is unknown.
const noSection = "none"

// addedIndex is the index into Store.added and applyState.added of events
// of kind k (0 requests, 1 errors) in section sec and scope sc.
func addedIndex(sec uint8, sc event.Scope, k int) int {
	return (int(sec)*event.NumScopes+int(sc))*2 + k
}

// wikiAttrs is what the window needs to know of a wiki besides its ID.
type wikiAttrs struct {
	group   string // train group, "" for none
	section string // DB section, "" for unknown
}

// New returns a running Store for the wikis of m. versions and rollouts are
// the interners ingest uses for Event.Version and Event.Rollout. Metrics are
// registered on reg unless it is nil. Close stops the shard goroutines.
func New(cfg Config, wikis *wikimap.Map, versions, rollouts *event.Interner, reg prometheus.Registerer) (*Store, error) {
	if wikis == nil {
		return nil, errors.New("new window: nil wiki map")
	}
	attrs := make([]wikiAttrs, wikis.Len()+1)
	for id := 1; id <= wikis.Len(); id++ {
		if w := wikis.Wiki(wikimap.ID(id)); w != nil {
			attrs[id] = wikiAttrs{group: w.Group, section: w.Section}
		}
	}
	return newStore(cfg, attrs, versions, rollouts, reg)
}

// newStore is New over a plain list of wiki attributes indexed by wiki ID
// (wikis[0] is unused), so tests can size the wiki set freely.
func newStore(cfg Config, wikis []wikiAttrs, versions, rollouts *event.Interner, reg prometheus.Registerer) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("new window: %w", err)
	}
	if versions == nil || rollouts == nil {
		return nil, errors.New("new window: nil interner")
	}
	nWikis := len(wikis) - 1
	if nWikis < 1 || nWikis > int(^wikimap.ID(0)) {
		return nil, fmt.Errorf("new window: %d wikis, want 1..%d", nWikis, int(^wikimap.ID(0)))
	}
	s := &Store{
		cfg:        cfg,
		width:      int64(cfg.Bucket),
		length:     int64(cfg.Length),
		lateness:   int64(cfg.Lateness),
		slots:      int64(cfg.Length / cfg.Bucket),
		merge:      int64(cfg.RolloutMerge),
		nWikis:     nWikis,
		groupOf:    make([]uint8, nWikis+1),
		groupNames: []string{""},
		sectionOf:  make([]uint8, nWikis+1),
		versions:   versions,
		rollouts:   rollouts,
	}
	// Sections are indexed in name order, so the index of a section does not
	// depend on the order of the wiki map.
	for id := 1; id <= nWikis; id++ {
		if sec := sectionName(wikis[id].section); !slices.Contains(s.sections, sec) {
			s.sections = append(s.sections, sec)
		}
	}
	if len(s.sections) > maxSections {
		return nil, fmt.Errorf("new window: %d DB sections, at most %d", len(s.sections), maxSections)
	}
	slices.Sort(s.sections)
	for id := 1; id <= nWikis; id++ {
		s.sectionOf[id] = uint8(slices.Index(s.sections, sectionName(wikis[id].section)))
	}
	for id := 1; id <= nWikis; id++ {
		g := wikis[id].group
		if g == "" {
			continue
		}
		i := slices.Index(s.groupNames, g)
		if i < 0 {
			if len(s.groupNames) > 255 {
				return nil, errors.New("new window: more than 255 train groups")
			}
			i = len(s.groupNames)
			s.groupNames = append(s.groupNames, g)
		}
		s.groupOf[id] = uint8(i)
	}
	s.pool.New = func() any { return &batch{items: make([]item, 0, batchEvents)} }
	s.cache = fastcache.New(cfg.CacheBytes)
	s.cat = newCatalogue(cfg.CatalogueEntries, int64(cfg.CatalogueBytes), versions)
	s.tl = newTimeline()
	s.shards = make([]*shard, cfg.Shards)
	for i := range s.shards {
		s.shards[i] = newShard(s, i)
	}
	if reg != nil {
		if err := reg.Register(newCollector(s)); err != nil {
			s.cache.Reset()
			return nil, fmt.Errorf("new window: register metrics: %w", err)
		}
	}
	s.wg.Add(len(s.shards))
	for _, sh := range s.shards {
		go sh.run()
	}
	return s, nil
}

// sectionName is the name a wiki's DB section goes by: noSection when the
// wiki map does not say.
func sectionName(sec string) string {
	if sec == "" {
		return noSection
	}
	return sec
}

// Sections returns the DB section names, indexed as SectionOf and
// FingerprintSection take them.
func (s *Store) Sections() []string { return slices.Clone(s.sections) }

// SectionOf returns the section index of wiki w.
func (s *Store) SectionOf(w wikimap.ID) int {
	if int(w) >= len(s.sectionOf) {
		return 0
	}
	return int(s.sectionOf[w])
}

// Close stops the shard goroutines after they have applied every batch
// already handed over, and releases the fastcache memory. Writers must not
// be used after Close; what they still buffer is discarded.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return ErrClosed
	}
	s.closed = true
	for _, sh := range s.shards {
		close(sh.ch)
	}
	s.closeMu.Unlock()
	s.wg.Wait()
	s.cache.Reset()
	return nil
}

// send hands b to shard i, blocking while the shard's queue is full. After
// Close the batch is recycled instead.
func (s *Store) send(i int, b *batch) {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		s.putBatch(b)
		return
	}
	s.shards[i].ch <- b
	s.closeMu.RUnlock()
}

// Sync returns once every event Added and Flushed before the call has been
// applied, by sending a marker through every shard's queue.
func (s *Store) Sync() {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return
	}
	marks := make([]*batch, len(s.shards))
	for i, sh := range s.shards {
		marks[i] = &batch{done: make(chan struct{})}
		sh.ch <- marks[i]
	}
	s.closeMu.RUnlock()
	for _, m := range marks {
		<-m.done
	}
	// A shard that got no events lately still closes the buckets the others
	// moved past, so that after Sync every shard has written out the same
	// buckets. Holding the shard's lock exclusively makes this goroutine
	// the owner for the moment.
	newest := s.newest.Load()
	for _, sh := range s.shards {
		sh.mu.Lock()
		sh.closeBuckets(max(newest, sh.newest))
		sh.mu.Unlock()
	}
}

func (s *Store) getBatch() *batch {
	b, ok := s.pool.Get().(*batch)
	if !ok {
		b = &batch{items: make([]item, 0, batchEvents)}
	}
	return b
}

func (s *Store) putBatch(b *batch) {
	b.items = b.items[:0]
	b.dets = b.dets[:0]
	if cap(b.arena) > arenaKeep {
		b.arena = nil
	}
	b.arena = b.arena[:0]
	s.pool.Put(b)
}

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
	lo, hi, ok := s.ring()
	if !ok {
		return c
	}
	b0, b1 := s.span(from, to)
	b0, b1 = max(b0, lo), min(b1, hi+1)
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
	lo, hi, ok := s.ring()
	if !ok {
		return dst
	}
	sh := s.shardOf(w)
	sh.mu.RLock()
	for b := max(b0, lo); b < min(b1, hi+1); b++ {
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
	lo, hi, ok := s.ring()
	if !ok {
		return dst
	}
	b0, b1 := s.span(from, to)
	b0, b1 = max(b0, lo), min(b1, hi+1)
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

// FingerprintCount is the number of occurrences of fingerprint fp on wiki w
// in scope sc over the buckets whose start lies in [from, to).
func (s *Store) FingerprintCount(fp uint64, w wikimap.ID, sc event.Scope, from, to int64) int64 {
	if !s.validKey(w, sc) {
		return 0
	}
	lo, hi, ok := s.ring()
	if !ok {
		return 0
	}
	b0, b1 := s.span(from, to)
	var n int64
	sh := s.shardOf(w)
	sh.mu.RLock()
	for b := max(b0, lo); b < min(b1, hi+1); b++ {
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
	lo, hi, ok := s.ring()
	if !ok {
		return dst
	}
	sh := s.shardOf(w)
	sh.mu.RLock()
	for b := max(b0, lo); b < min(b1, hi+1); b++ {
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
	lo, hi, ok := s.ring()
	if !ok {
		return 0, 0
	}
	b0, b1 := s.span(from, to)
	b0, b1 = max(b0, lo), min(b1, hi+1)
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
	lo, hi, ok := s.ring()
	if !ok {
		return 0
	}
	b0, b1 := s.span(from, to)
	b0, b1 = max(b0, lo), min(b1, hi+1)
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

// Deploys appends to dst[:0] the deploy timeline ordered by At: versions
// and rollouts seen in events, and the markers given to AddDeploy. It keeps
// the newest maxTimeline entries.
func (s *Store) Deploys(dst []Deploy) []Deploy {
	return s.tl.deploys(dst[:0], s)
}

// AddDeploy adds an explicit deploy marker (config, scap announcement, the
// deploys API). An identical marker is kept once.
func (s *Store) AddDeploy(d Deploy) { s.tl.addMarker(d) }

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

func (s *Store) validKey(w wikimap.ID, sc event.Scope) bool {
	return w != 0 && int(w) <= s.nWikis && sc < event.NumScopes
}

func (s *Store) shardOf(w wikimap.ID) *shard { return s.shards[int(w)%len(s.shards)] }

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
