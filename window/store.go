package window

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

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

func (s *Store) validKey(w wikimap.ID, sc event.Scope) bool {
	return w != 0 && int(w) <= s.nWikis && sc < event.NumScopes
}

func (s *Store) shardOf(w wikimap.ID) *shard { return s.shards[int(w)%len(s.shards)] }
