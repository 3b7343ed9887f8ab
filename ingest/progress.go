package ingest

import (
	"slices"
	"strings"
	"time"
)

// Per-partition progress, for the daemon's watermark. A stream processor
// may judge an event-time bucket only once every input has passed it; the
// inputs here are the partitions, each read by its own goroutine at its own
// pace (a reconnect with backoff is enough to put one behind). So the
// watermark is the minimum over partitions of what each has read, with two
// exceptions that keep one partition from stopping everything:
//
//   - idle: a partition whose last fetch reached its high-water mark has
//     nothing to hold back (its next record is newer than anything read);
//   - set aside: a partition that cannot be read, or stays behind the
//     others, for longer than MaxPartitionStall no longer holds the
//     watermark; it shows in detector_ingest_partitions_stalled and in
//     Assessment.SetAside, and rejoins once it has caught up.
//
// A partition found after the warm-up (a new topic or partition) reads from
// the start position without holding the others back until it has reached
// the high-water mark it saw first.

// partState is one partition's progress. The partition's goroutine
// updates it once per fetch, under Consumer.mu; Assess reads it.
type partState struct {
	key      partitionKey
	requests bool
	late     bool // started after the warm-up

	progress  int64     // newest Kafka time read, Unix ns (clamped to MaxAhead); 0 before any
	caught    bool      // reached the high-water mark of its first fetch
	idle      bool      // its last fetch ended at the high-water mark
	failing   time.Time // when fetches began failing (or the partition started); zero while they succeed
	done      bool      // its goroutine returned
	lastError string

	// Offsets, for a replay's progress: where reading started, where it
	// is, and where it will stop (with End).
	startOff, offset, endOff int64
	oldest                   time.Time // the oldest retained record, when newer than Start

	// Assess's own state.
	behind    time.Time // since when it holds the watermark more than the lateness behind the newest
	setAside  bool
	asideWhy  string
	asideFrom time.Time
}

// SetAside is a partition that no longer holds the watermark back.
type SetAside struct {
	Cluster   string    `json:"cluster"`
	Topic     string    `json:"topic"`
	Partition int       `json:"partition"`
	Requests  bool      `json:"requests"` // a request topic: rates may read low while it is set aside
	Reason    string    `json:"reason"`   // "unreadable" or "behind"
	Since     time.Time `json:"since"`
	Progress  time.Time `json:"read_up_to,omitzero"` // newest Kafka time read
	Error     string    `json:"last_error,omitempty"`
}

// Assessment is where the partitions stand, for the daemon's evaluation.
type Assessment struct {
	// WarmedUp: every partition found at start has read up to the
	// high-water mark it saw first, or has been set aside. It stays true.
	WarmedUp bool
	// Low is the watermark's input: the newest Kafka time (Unix ns) every
	// partition that holds the watermark has read; the newest of all when
	// none holds it. 0 while a holding partition has read nothing.
	Low int64
	// Newest is the newest Kafka time read by any partition.
	Newest int64
	// SetAside lists the partitions set aside, sorted.
	SetAside []SetAside
}

// RequestsSetAside tells whether a request topic's partition is set aside.
func (a Assessment) RequestsSetAside() bool {
	return slices.ContainsFunc(a.SetAside, func(s SetAside) bool { return s.Requests })
}

// Assess updates which partitions are set aside, as of now, and returns
// where they stand. lateness is the allowed lateness: a partition further
// than that behind the newest holds the watermark back. Call it from one
// goroutine (the evaluation loop), often.
func (c *Consumer) Assess(now time.Time, lateness time.Duration) Assessment {
	c.mu.Lock()
	defer c.mu.Unlock()
	var a Assessment
	for _, st := range c.parts {
		a.Newest = max(a.Newest, st.progress)
	}
	c.updateWarm(now)
	a.WarmedUp = c.warm
	low := int64(-1)
	stalled := map[string]int{}
	for _, st := range c.parts {
		switch c.judge(st, now, a.Newest-int64(lateness)) {
		case asideRole:
			stalled[st.key.topic]++
			a.SetAside = append(a.SetAside, c.setAsideOf(st))
		case holdsRole:
			if low < 0 || st.progress < low {
				low = st.progress
			}
		}
	}
	if low < 0 {
		low = a.Newest
	}
	a.Low = max(low, c.low)
	if a.WarmedUp {
		c.low = a.Low
	}
	for _, s := range c.opts.Sources {
		c.metrics.stalled.WithLabelValues(s.Topic).Set(float64(stalled[s.Topic]))
	}
	slices.SortFunc(a.SetAside, func(x, y SetAside) int {
		if x.Topic != y.Topic {
			if x.Topic < y.Topic {
				return -1
			}
			return 1
		}
		return x.Partition - y.Partition
	})
	return a
}

// updateWarm ends the warm-up once every partition found at start has
// caught up, finished, or been set aside or become unreadable. Under c.mu.
func (c *Consumer) updateWarm(now time.Time) {
	if c.warm || !c.initialDone {
		return
	}
	for _, st := range c.parts {
		if !st.late && !st.caught && !st.done && !(st.setAside || c.unreadable(st, now)) {
			return
		}
	}
	c.warm = true
}

// partRole is what a partition does for the watermark, as judged by Assess.
type partRole int

const (
	holdsRole partRole = iota // the watermark waits for it
	freeRole                  // done, idle or warming up late: it holds nothing back
	asideRole                 // set aside
)

// judge decides a partition's role, setting it aside or letting it rejoin.
// lowBound is the oldest progress that is not behind: the newest minus the
// lateness. Under c.mu.
func (c *Consumer) judge(st *partState, now time.Time, lowBound int64) partRole {
	if st.done {
		st.setAside = false
		return freeRole
	}
	if st.setAside {
		// It rejoins once readable and no longer behind what was judged.
		if c.unreadable(st, now) || !(st.idle || (st.caught && st.progress >= c.low)) {
			return asideRole
		}
		st.setAside, st.behind = false, time.Time{}
		c.logger.Info("Partition caught up; it holds the watermark again", "topic", st.key.topic, "partition", st.key.partition)
	}
	bound := c.opts.MaxPartitionStall
	why := ""
	switch {
	case c.unreadable(st, now):
		why = "unreadable"
	case st.late && !st.caught, st.idle:
		st.behind = time.Time{}
		return freeRole // warming up after the start, or nothing to read
	case c.warm && st.progress < lowBound:
		if st.behind.IsZero() {
			st.behind = now
		}
		if now.Sub(st.behind) > bound {
			why = "behind"
		}
	default:
		st.behind = time.Time{}
	}
	if why == "" {
		return holdsRole
	}
	st.setAside, st.asideWhy, st.asideFrom = true, why, now
	c.logger.Warn("Partition set aside: it no longer holds the watermark back",
		"topic", st.key.topic, "partition", st.key.partition, "reason", why, "bound", bound, "err", st.lastError)
	return asideRole
}

// unreadable: no fetch has succeeded for longer than the bound.
func (c *Consumer) unreadable(st *partState, now time.Time) bool {
	return !st.failing.IsZero() && now.Sub(st.failing) > c.opts.MaxPartitionStall
}

func (c *Consumer) setAsideOf(st *partState) SetAside {
	s := SetAside{Cluster: st.key.cluster, Topic: st.key.topic, Partition: st.key.partition, Requests: st.requests,
		Reason: st.asideWhy, Since: st.asideFrom.UTC(), Error: st.lastError}
	if st.progress > 0 {
		s.Progress = time.Unix(0, st.progress).UTC()
	}
	return s
}

// A replay's progress is counted in offsets rather than event times
// (Offsets), and a range that begins before what Kafka retains is reported
// (StartsAfterStart).

// PartitionStart is a partition whose oldest retained record is newer than
// where reading was to start.
type PartitionStart struct {
	Topic     string
	Partition int
	Oldest    time.Time // the oldest record's Kafka time
}

// StartsAfterStart lists the partitions whose oldest retained record is
// newer than ConsumerOptions.Start, sorted.
func (c *Consumer) StartsAfterStart() []PartitionStart {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []PartitionStart
	for _, st := range c.parts {
		if !st.oldest.IsZero() {
			out = append(out, PartitionStart{Topic: st.key.topic, Partition: st.key.partition, Oldest: st.oldest})
		}
	}
	slices.SortFunc(out, func(a, b PartitionStart) int {
		if a.Topic != b.Topic {
			return strings.Compare(a.Topic, b.Topic)
		}
		return a.Partition - b.Partition
	})
	return out
}

// Offsets returns how many offsets the partitions have read since their
// start and how many lie between their start and where they will stop
// (with End; without it, their high-water marks at the last fetch are not
// tracked and total is what was read). It measures a replay's progress
// in records, whatever the event times.
func (c *Consumer) Offsets() (read, total int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.parts {
		if st.offset < st.startOff {
			continue // not started
		}
		end := max(st.endOff, st.startOff)
		r := min(st.offset, end) - st.startOff
		if st.done {
			r = end - st.startOff
		}
		read += max(r, 0)
		total += end - st.startOff
	}
	return read, total
}
