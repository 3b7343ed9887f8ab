package markertopic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/segmentio/kafka-go"

	"github.com/wikimedia/pretrain-detector/window"
)

// Reader follows the topic and applies its markers.
type Reader struct {
	o         Options
	client    *kafka.Client
	transport *kafka.Transport

	caughtUp atomic.Bool
	mu       sync.Mutex
	parts    map[int]*partState

	applied  prometheus.Counter
	rejected *prometheus.CounterVec
	logged   atomic.Int64
}

type partState struct {
	next, end int64 // next offset to read; high-water mark seen at start
	done      bool  // read up to end
}

// NewReader builds a Reader; its metrics go to o.Registry. Run starts it.
func NewReader(o Options) (*Reader, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if o.Apply == nil {
		return nil, errors.New("marker topic: no Apply")
	}
	t := o.transport()
	f := promauto.With(o.Registry)
	r := &Reader{
		o: o, transport: t, client: &kafka.Client{Addr: kafka.TCP(o.Brokers...), Transport: t},
		parts: map[int]*partState{},
		applied: f.NewCounter(prometheus.CounterOpts{Namespace: "detector", Subsystem: "markers", Name: "applied_total",
			Help: "Deploy markers read from the marker topic and added to the deploy timeline."}),
		rejected: f.NewCounterVec(prometheus.CounterOpts{Namespace: "detector", Subsystem: "markers", Name: "rejected_total",
			Help: "Records of the marker topic skipped, by reason."}, []string{"reason"}),
	}
	for _, reason := range []string{"oversize", "json", "field", "time"} {
		r.rejected.WithLabelValues(reason)
	}
	return r, nil
}

// CaughtUp reports whether every partition was read up to the high-water
// mark it had when the reader started (or the topic does not exist).
func (r *Reader) CaughtUp() bool { return r.caughtUp.Load() }

// Run reads until ctx is done.
func (r *Reader) Run(ctx context.Context) error {
	defer r.transport.CloseIdleConnections()
	backoff := minBackoff
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[int]bool{}
	warned := false
	for {
		parts, err := r.partitions(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, kafka.UnknownTopicOrPartition), errors.Is(err, kafka.TopicAuthorizationFailed):
			// Markers are an aid to blame, not a condition of detecting:
			// a topic that is missing or not ours to read leaves the
			// detector ready, and says so.
			if !warned {
				r.o.Logger.Warn("Marker topic cannot be read; deploy markers from the API are not applied until it can", "topic", r.o.Topic, "err", err)
				warned = true
			}
			r.caughtUp.Store(r.allDone())
		case err != nil:
			r.o.Logger.Warn("Looking up the marker topic", "topic", r.o.Topic, "err", err)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		default:
			backoff = minBackoff
			var fresh []int
			for _, p := range parts {
				if !running[p] {
					fresh = append(fresh, p)
				}
			}
			if len(fresh) > 0 {
				if err := r.start(ctx, fresh); err != nil {
					r.o.Logger.Warn("Finding where to start reading the marker topic", "topic", r.o.Topic, "err", err)
					if !sleep(ctx, backoff) {
						return nil
					}
					continue
				}
				for _, p := range fresh {
					running[p] = true
					wg.Go(func() { r.follow(ctx, p) })
				}
			}
			r.caughtUp.Store(r.allDone())
		}
		if !sleep(ctx, r.o.Recheck) {
			return nil
		}
	}
}

// partitions lists the topic's partitions.
func (r *Reader) partitions(ctx context.Context) ([]int, error) {
	res, err := r.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{r.o.Topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	for _, t := range res.Topics {
		if t.Name != r.o.Topic {
			continue
		}
		if t.Error != nil {
			return nil, t.Error
		}
		out := make([]int, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			out = append(out, p.ID)
		}
		return out, nil
	}
	return nil, kafka.UnknownTopicOrPartition
}

// start finds, for new partitions, the high-water mark and the first offset
// at or after Since (the high-water mark when there is none).
func (r *Reader) start(ctx context.Context, parts []int) error {
	last, byTime := make([]kafka.OffsetRequest, 0, len(parts)), make([]kafka.OffsetRequest, 0, len(parts))
	for _, p := range parts {
		last = append(last, kafka.LastOffsetOf(p))
		byTime = append(byTime, kafka.TimeOffsetOf(p, r.o.Since))
	}
	// Two requests: in one answer a time with no record after it and the
	// last offset look the same (timestamp -1).
	lres, err := r.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{r.o.Topic: last}})
	if err != nil {
		return fmt.Errorf("list last offsets: %w", err)
	}
	tres, err := r.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{r.o.Topic: byTime}})
	if err != nil {
		return fmt.Errorf("list offsets at %s: %w", r.o.Since.Format(time.RFC3339), err)
	}
	states := map[int]*partState{}
	for _, po := range lres.Topics[r.o.Topic] {
		if po.Error != nil {
			return fmt.Errorf("partition %d: %w", po.Partition, po.Error)
		}
		states[po.Partition] = &partState{next: po.LastOffset, end: po.LastOffset, done: true}
	}
	for _, po := range tres.Topics[r.o.Topic] {
		st := states[po.Partition]
		if st == nil {
			continue
		}
		if po.Error != nil {
			return fmt.Errorf("partition %d: %w", po.Partition, po.Error)
		}
		for off := range po.Offsets {
			if off >= 0 && off < st.end {
				st.next, st.done = off, false
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range parts {
		st := states[p]
		if st == nil {
			return fmt.Errorf("partition %d: no offsets in the answer", p)
		}
		r.parts[p] = st
	}
	return nil
}

// bounds returns a partition's first offset and its high-water mark (two
// requests: kafka-go cannot tell the two answers apart in one).
func (r *Reader) bounds(ctx context.Context, p int) (first, last int64, err error) {
	get := func(req kafka.OffsetRequest) (kafka.PartitionOffsets, error) {
		res, err := r.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{r.o.Topic: {req}}})
		if err != nil {
			return kafka.PartitionOffsets{}, fmt.Errorf("list offsets: %w", err)
		}
		for _, po := range res.Topics[r.o.Topic] {
			if po.Partition == p {
				return po, po.Error
			}
		}
		return kafka.PartitionOffsets{}, fmt.Errorf("partition %d: no offsets in the answer", p)
	}
	fo, err := get(kafka.FirstOffsetOf(p))
	if err != nil {
		return 0, 0, err
	}
	lo, err := get(kafka.LastOffsetOf(p))
	if err != nil {
		return 0, 0, err
	}
	// The broker answers both with timestamp -1, which kafka-go files
	// under LastOffset.
	return max(fo.FirstOffset, fo.LastOffset), lo.LastOffset, nil
}

func (r *Reader) allDone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range r.parts {
		if !st.done {
			return false
		}
	}
	return true
}

// follow fetches one partition until ctx is done.
func (r *Reader) follow(ctx context.Context, p int) {
	r.mu.Lock()
	st := r.parts[p]
	next := st.next
	r.mu.Unlock()
	backoff := minBackoff
	for ctx.Err() == nil {
		res, err := r.client.Fetch(ctx, &kafka.FetchRequest{Topic: r.o.Topic, Partition: p, Offset: next,
			MinBytes: 1, MaxBytes: 1 << 20, MaxWait: r.o.MaxWait})
		if err == nil && res.Error != nil {
			err = res.Error
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, kafka.OffsetOutOfRange) {
				// Retention removed what was not read yet, or the topic was
				// recreated shorter: go on from the nearest offset it has.
				if first, last, lerr := r.bounds(ctx, p); lerr == nil {
					next = min(max(next, first), last)
				}
			}
			r.o.Logger.Warn("Reading the marker topic", "topic", r.o.Topic, "partition", p, "err", err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		next = r.apply(res.Records, next)
		r.mu.Lock()
		st.next = next
		if next >= st.end {
			st.done = true
		}
		r.mu.Unlock()
		r.caughtUp.Store(r.allDone())
	}
}

// apply decodes, checks and applies the records at or after next, and
// returns the offset after the last one.
func (r *Reader) apply(recs kafka.RecordReader, next int64) int64 {
	if recs == nil {
		return next
	}
	for {
		rec, err := recs.ReadRecord()
		if err != nil {
			return next // io.EOF, or a torn batch the next fetch reads again
		}
		if rec.Offset < next {
			continue // a batch may start before the offset asked for
		}
		next = rec.Offset + 1
		if reason, err := r.applyOne(rec); err != nil {
			r.rejected.WithLabelValues(reason).Inc()
			// Throttled: a flood of bad records must not flood the log.
			if n := r.logged.Add(1); n <= 10 || n%100 == 0 {
				r.o.Logger.Warn("Skipping a marker topic record", "offset", rec.Offset, "reason", reason, "err", err)
			}
		}
	}
}

func (r *Reader) applyOne(rec *kafka.Record) (reason string, err error) {
	if rec.Value == nil {
		return "json", errors.New("empty value")
	}
	b, err := io.ReadAll(io.LimitReader(rec.Value, maxRecordBytes+1))
	if err != nil {
		return "json", fmt.Errorf("read value: %w", err)
	}
	if len(b) > maxRecordBytes {
		return "oversize", fmt.Errorf("value over %d bytes", maxRecordBytes)
	}
	var m Marker
	if err := json.Unmarshal(b, &m); err != nil {
		return "json", fmt.Errorf("decode: %w", err)
	}
	d, err := window.NewMarker(m.Scope, m.Group, m.Version, m.At, Source)
	if err != nil {
		return "field", err
	}
	if m.At.Before(rec.Time.Add(-r.o.MaxAge)) || m.At.After(rec.Time.Add(r.o.MaxAhead)) {
		return "time", fmt.Errorf("field at: %s is outside [record time − %s, record time + %s]", m.At.UTC().Format(time.RFC3339), r.o.MaxAge, r.o.MaxAhead)
	}
	if err := r.o.Apply(d); err != nil {
		return "field", err
	}
	r.applied.Inc()
	r.o.Logger.Info("Deploy marker applied", "scope", m.Scope, "group", m.Group, "version", m.Version, "at", m.At, "by", m.By)
	return "", nil
}

// sleep waits d or until ctx is done, reporting whether it was d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
