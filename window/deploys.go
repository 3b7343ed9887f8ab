package window

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/wikimedia/pretrain-detector/event"
)

// The deploy timeline is learned from events: the versions (mwversion) seen
// per scope and train group, and the rollouts ("<release>-<replicaset
// hash>") seen per scope. Pretrain's mwversion does not change per deploy,
// so a new rollout id in the pretrain scope is a Pretrain deploy. Each
// shard remembers the keys it has seen (bounded, least recently seen
// evicted) and tells the shared timeline about new keys, earlier first
// sightings, and, every reportEvery of event time, that a key is still
// seen. The timeline derives deploys when asked: per series the key seen
// first is the initial state, every later one a deploy, and rollouts within
// RolloutMerge of a deploy's first are that deploy.

const (
	seenVersion = 0
	seenRollout = 1

	maxSeenPerShard = 4096 // keys a shard remembers
	maxTimelineKeys = 8192 // keys the timeline remembers
	maxTimeline     = 1000 // event-derived entries Deploys returns, the newest
	maxMarkers      = 1000 // explicit markers kept, the newest; never counted against maxTimeline
	seenCacheSize   = 256  // direct-mapped cache in front of a shard's key map
	reportEvery     = int64(10 * time.Minute)
)

// seenKey packs (kind, scope, group, id); the upper 32 bits name the series.
func seenKey(kind int, sc event.Scope, group uint8, id uint32) uint64 {
	return uint64(kind)<<48 | uint64(sc)<<40 | uint64(group)<<32 | uint64(id)
}

type seenReport struct {
	key         uint64
	first, last int64
}

type seenRec struct {
	key                   uint64
	first, last, reported int64
}

// seenSet is a shard's memory of keys. The direct-mapped cache makes the
// per-event check a few loads in the common case of a known key.
type seenSet struct {
	idx   map[uint64]int32
	recs  []seenRec
	cache [seenCacheSize]int32 // index+1 into recs, 0 = empty
	max   int
}

func (s *seenSet) init(maxKeys int) {
	s.idx = make(map[uint64]int32)
	s.max = maxKeys
}

func cacheSlot(key uint64) int { return int((key * 0x9E3779B97F4A7C15) >> 56) }

// note records that key was seen at t and appends what the timeline must
// learn to reports.
func (s *seenSet) note(key uint64, t int64, reports []seenReport) []seenReport {
	h := cacheSlot(key)
	j := s.cache[h] - 1
	if j < 0 || s.recs[j].key != key {
		var ok bool
		if j, ok = s.idx[key]; !ok {
			if len(s.recs) >= s.max {
				s.evict()
			}
			s.recs = append(s.recs, seenRec{key: key, first: t, last: t, reported: t})
			j = int32(len(s.recs) - 1)
			s.idx[key] = j
			s.cache[h] = j + 1
			return append(reports, seenReport{key: key, first: t, last: t})
		}
		s.cache[h] = j + 1
	}
	r := &s.recs[j]
	r.last = max(r.last, t)
	if t < r.first || r.last-r.reported >= reportEvery {
		r.first = min(r.first, t)
		r.reported = r.last
		reports = append(reports, seenReport{key: key, first: r.first, last: r.last})
	}
	return reports
}

// evict drops the least recently seen key.
func (s *seenSet) evict() {
	lru := 0
	for i := range s.recs {
		if s.recs[i].last < s.recs[lru].last {
			lru = i
		}
	}
	delete(s.idx, s.recs[lru].key)
	last := len(s.recs) - 1
	if lru != last {
		s.recs[lru] = s.recs[last]
		s.idx[s.recs[lru].key] = int32(lru)
	}
	s.recs = s.recs[:last]
	s.cache = [seenCacheSize]int32{}
}

type seenTimes struct{ first, last int64 }

type keyFirst struct {
	key   uint64
	first int64
}

// timeline merges the shards' sightings and the explicit markers.
type timeline struct {
	mu          sync.Mutex
	keys        map[uint64]seenTimes
	seriesFirst map[uint64]int64 // series → earliest sighting ever: its initial state
	markers     []Deploy
}

func newTimeline() *timeline {
	return &timeline{keys: make(map[uint64]seenTimes), seriesFirst: make(map[uint64]int64)}
}

func (tl *timeline) report(rs []seenReport) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, r := range rs {
		cur, ok := tl.keys[r.key]
		if !ok {
			cur = seenTimes{first: r.first, last: r.last}
		}
		cur.first, cur.last = min(cur.first, r.first), max(cur.last, r.last)
		tl.keys[r.key] = cur
		series := r.key >> 32
		if sf, ok := tl.seriesFirst[series]; !ok || r.first < sf {
			tl.seriesFirst[series] = r.first
		}
	}
	if len(tl.keys) > maxTimelineKeys {
		tl.evict(len(tl.keys) - maxTimelineKeys*9/10)
	}
}

// evict drops the n least recently seen keys; seriesFirst keeps the
// initial times, so a series whose initial key is gone has no Initial entry
// rather than a wrong one.
func (tl *timeline) evict(n int) {
	type kl struct {
		key  uint64
		last int64
	}
	all := make([]kl, 0, len(tl.keys))
	for k, v := range tl.keys {
		all = append(all, kl{k, v.last})
	}
	slices.SortFunc(all, func(a, b kl) int { return cmp.Or(cmp.Compare(a.last, b.last), cmp.Compare(a.key, b.key)) })
	for _, x := range all[:n] {
		delete(tl.keys, x.key)
	}
}

// Bounds of an explicit marker. Markers come from outside the event stream
// (the config file, the deploys API through the marker topic), so each field
// is bounded before it can reach the timeline.
const (
	MaxMarkerVersion = 128 // bytes of a marker's version
	MaxMarkerGroup   = 64  // bytes of a marker's train group
)

// markerTimeMin and markerTimeMax bound a marker's time to what UnixNano can
// represent without wrapping (a year-1600 time would otherwise become 2184)
// and to the era the detector runs in.
var (
	markerTimeMin = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	markerTimeMax = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// NewMarker checks an explicit deploy marker and returns its timeline entry.
// Errors name the offending field (scope, group, version, at), so the API
// and the config can pass them on as they are.
func NewMarker(scope, group, version string, at time.Time, source string) (Deploy, error) {
	var sc event.Scope
	switch scope {
	case "pretrain":
		sc = event.ScopePretrain
	case "train":
		sc = event.ScopeTrain
	default:
		return Deploy{}, fmt.Errorf("field scope: want \"pretrain\" or \"train\", got %q", truncateField(scope))
	}
	if err := markerText("version", version, MaxMarkerVersion, true); err != nil {
		return Deploy{}, err
	}
	if err := markerText("group", group, MaxMarkerGroup, false); err != nil {
		return Deploy{}, err
	}
	if sc == event.ScopePretrain && group != "" {
		return Deploy{}, errors.New("field group: Pretrain has no train group")
	}
	if at.Before(markerTimeMin) || !at.Before(markerTimeMax) {
		return Deploy{}, fmt.Errorf("field at: %s is outside [%s, %s)", at.UTC().Format(time.RFC3339), markerTimeMin.Format(time.RFC3339), markerTimeMax.Format(time.RFC3339))
	}
	return Deploy{Scope: sc, Group: group, Version: version, At: at.UnixNano(), Source: source}, nil
}

// markerText bounds a marker's text field: printable UTF-8 of at most limit
// bytes, non-empty when required.
func markerText(field, s string, limit int, required bool) error {
	switch {
	case s == "" && required:
		return fmt.Errorf("field %s: required", field)
	case len(s) > limit:
		return fmt.Errorf("field %s: %d bytes, at most %d allowed", field, len(s), limit)
	case !utf8.ValidString(s):
		return fmt.Errorf("field %s: not valid UTF-8", field)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == ' ' {
			return fmt.Errorf("field %s: control characters and spaces are not allowed", field)
		}
	}
	return nil
}

// truncateField keeps an echoed bad value short.
func truncateField(s string) string {
	if len(s) > 32 {
		for i := 32; i > 0; i-- {
			if utf8.RuneStart(s[i]) {
				return s[:i] + "…"
			}
		}
	}
	return s
}

// AddMarker adds an explicit deploy marker after the checks of NewMarker
// (d as built by it, or by hand in tests). An identical marker is kept once.
// Markers are kept apart from the deploys learned from the events and
// bounded on their own, so no number of markers, whatever their dates, can
// push an event-derived deploy out of the timeline.
func (s *Store) AddMarker(d Deploy) error {
	at := time.Unix(0, d.At).UTC()
	scope := "train"
	if d.Scope == event.ScopePretrain {
		scope = "pretrain"
	} else if d.Scope != event.ScopeTrain {
		return fmt.Errorf("field scope: unknown scope %d", d.Scope)
	}
	if _, err := NewMarker(scope, d.Group, d.Version, at, d.Source); err != nil {
		return err
	}
	s.tl.addMarker(d)
	return nil
}

func (tl *timeline) addMarker(d Deploy) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if slices.Contains(tl.markers, d) {
		return
	}
	tl.markers = append(tl.markers, d)
	slices.SortStableFunc(tl.markers, func(a, b Deploy) int { return cmp.Compare(a.At, b.At) })
	if len(tl.markers) > maxMarkers {
		tl.markers = slices.Delete(tl.markers, 0, len(tl.markers)-maxMarkers)
	}
}

func (tl *timeline) size() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return len(tl.keys)
}

// deploys appends the derived timeline and the markers to dst, ordered by
// At: the newest maxTimeline derived entries and every kept marker (at most
// maxMarkers). The two are bounded apart so markers never evict a deploy
// seen in the events.
func (tl *timeline) deploys(dst []Deploy, s *Store) []Deploy {
	tl.mu.Lock()
	keys := make([]keyFirst, 0, len(tl.keys))
	for k, v := range tl.keys {
		keys = append(keys, keyFirst{k, v.first})
	}
	// Ties of first sighting go by name, not by interned id: ids follow the
	// order decoders met the strings in, which differs between runs.
	slices.SortFunc(keys, func(a, b keyFirst) int {
		return cmp.Or(cmp.Compare(a.key>>32, b.key>>32), cmp.Compare(a.first, b.first),
			cmp.Compare(s.keyName(a.key), s.keyName(b.key)))
	})
	base := len(dst)
	for i := 0; i < len(keys); {
		series := keys[i].key >> 32
		j := i
		for j < len(keys) && keys[j].key>>32 == series {
			j++
		}
		dst = tl.series(dst, s, series, keys[i:j])
		i = j
	}
	derived := dst[base:]
	slices.SortStableFunc(derived, func(a, b Deploy) int { return cmp.Compare(a.At, b.At) })
	if len(derived) > maxTimeline {
		dst = slices.Delete(dst, base, base+len(derived)-maxTimeline)
	}
	dst = append(dst, tl.markers...)
	tl.mu.Unlock()
	slices.SortStableFunc(dst[base:], func(a, b Deploy) int { return cmp.Compare(a.At, b.At) })
	return dst
}

// keyName is the version or rollout a key names.
func (s *Store) keyName(key uint64) string {
	if int(key>>48) == seenVersion {
		return s.versions.String(uint32(key))
	}
	return s.rollouts.String(uint32(key))
}

// series appends the deploys of one series, whose keys are sorted by first.
func (tl *timeline) series(dst []Deploy, s *Store, series uint64, keys []keyFirst) []Deploy {
	kind := int(series >> 16)
	sc := event.Scope(series >> 8 & 0xff)
	init := tl.seriesFirst[series]
	if kind == seenVersion {
		group := s.groupNames[series&0xff]
		for _, k := range keys {
			dst = append(dst, Deploy{
				Scope: sc, Group: group, Version: s.versions.String(uint32(k.key)),
				At: k.first, Source: "mwversion", Initial: k.first == init,
			})
		}
		return dst
	}
	// Rollouts: a cluster starts at the series' first sighting and at every
	// rollout more than RolloutMerge after the current cluster's start; the
	// earliest rollout still remembered names the cluster.
	start, named := init, false
	for _, k := range keys {
		if k.first-start >= s.merge {
			start, named = k.first, false
		}
		if named {
			continue
		}
		named = true
		dst = append(dst, Deploy{
			Scope: sc, Version: s.rollouts.String(uint32(k.key)),
			At: k.first, Source: "rollout", Initial: start == init,
		})
	}
	return dst
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
