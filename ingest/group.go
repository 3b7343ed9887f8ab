package ingest

// Consumer-group mode, for the scale-out stage of the design: past one machine, `detector aggregate` instances join
// one Kafka consumer group, so the partitions of the raw topics are split
// among them and each record is handled by one instance; each reduces its
// events to per-(wiki, scope, bucket) counts for `detector run`. This is
// the only place the detector commits offsets: `run` and `replay` read
// every partition themselves and keep no state but Kafka (Consumer).
//
// Delivery is at least once. A partition's processed offset is committed
// only after its Sink's Flush returned for the batch that held it, every
// CommitInterval and when the partition is revoked or the consumer stops;
// after a crash or a lost commit the next owner reads again from the last
// committed offset. A Sink used here must therefore hand its events on
// (durably, for the aggregate stage) before Flush returns, and what it
// produces from them must tolerate a replayed batch.
//
// It is built on kafka-go's ConsumerGroup, not a Reader with a GroupID: a
// generation hands over its assignments, so each partition gets its own
// goroutine, connection, Decoder and Sink, exactly as in Consumer, instead
// of one Reader funnelling every partition through a single goroutine.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/segmentio/kafka-go"
)

// GroupOptions configures a GroupConsumer.
type GroupOptions struct {
	// GroupID is the consumer group every instance joins.
	GroupID string
	// Sources are the topics to read. A consumer group lives on one
	// cluster: every source must name the same cluster and brokers.
	Sources []Source
	// NewSink and NewDecoder are called once per partition each time the
	// partition is assigned. See the package note above on Flush.
	NewSink    func() Sink
	NewDecoder func(Format) (*Decoder, error)
	MaxWait    time.Duration // default 250 ms: small, so a rebalance is not held up
	MinBytes   int           // default 1
	MaxBytes   int           // default 16 MiB
	// CommitInterval is how often processed offsets are committed. Default 1 s.
	CommitInterval time.Duration
	// HeartbeatInterval, SessionTimeout and RebalanceTimeout are kafka-go's
	// (defaults 3 s, 30 s, 30 s).
	HeartbeatInterval time.Duration
	SessionTimeout    time.Duration
	RebalanceTimeout  time.Duration
	// StartOffset is where a partition with no committed offset begins:
	// kafka.FirstOffset (the default) or kafka.LastOffset.
	StartOffset int64
}

// GroupMetrics are the consumer-group counters; the per-topic record
// counters are the shared Metrics.
type GroupMetrics struct {
	generations  prometheus.Counter
	commits      prometheus.Counter
	commitErrors prometheus.Counter
}

// NewGroupMetrics registers the consumer-group metrics on reg.
func NewGroupMetrics(reg prometheus.Registerer) *GroupMetrics {
	f := promauto.With(reg)
	return &GroupMetrics{
		generations: f.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "group_generations_total",
			Help: "Consumer-group generations joined (each rebalance starts one)."}),
		commits: f.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "group_commits_total",
			Help: "Offset commits sent to the group coordinator."}),
		commitErrors: f.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "group_commit_errors_total",
			Help: "Offset commits that failed; their records will be read again by the partition's next owner."}),
	}
}

// GroupConsumer reads the partitions a consumer group assigns to it.
type GroupConsumer struct {
	opts    GroupOptions
	fetch   kafka.ReadBatchConfig // opts' fetch settings, defaults filled in
	byTopic map[string]Source
	logger  *slog.Logger
	metrics *Metrics
	gm      *GroupMetrics

	mu       sync.Mutex
	assigned map[string][]int
	handles  map[groupPartition]*partitionMetricsHandle
}

type groupPartition struct {
	topic     string
	partition int
}

// NewGroupConsumer checks opts and returns a GroupConsumer; Run joins the group.
func NewGroupConsumer(opts GroupOptions, logger *slog.Logger, m *Metrics, gm *GroupMetrics) (*GroupConsumer, error) {
	if opts.GroupID == "" {
		return nil, errors.New("consumer group: GroupID is empty")
	}
	if len(opts.Sources) == 0 {
		return nil, errors.New("consumer group: no topics configured")
	}
	if opts.NewSink == nil || opts.NewDecoder == nil {
		return nil, errors.New("consumer group: NewSink and NewDecoder are required")
	}
	if logger == nil || m == nil || gm == nil {
		return nil, errors.New("consumer group: logger and metrics are required")
	}
	byTopic := map[string]Source{}
	first := opts.Sources[0]
	for _, s := range opts.Sources {
		if s.Cluster != first.Cluster || !slices.Equal(s.Brokers, first.Brokers) {
			return nil, fmt.Errorf("consumer group: topic %s is on cluster %s, topic %s on %s: a group lives on one cluster", s.Topic, s.Cluster, first.Topic, first.Cluster)
		}
		if _, dup := byTopic[s.Topic]; dup {
			return nil, fmt.Errorf("consumer group: topic %s listed twice", s.Topic)
		}
		if _, err := opts.NewDecoder(s.Format); err != nil {
			return nil, fmt.Errorf("consumer group: topic %s: %w", s.Topic, err)
		}
		byTopic[s.Topic] = s
	}
	if len(first.Brokers) == 0 {
		return nil, fmt.Errorf("consumer group: cluster %s has no brokers", first.Cluster)
	}
	switch opts.StartOffset {
	case 0:
		opts.StartOffset = kafka.FirstOffset
	case kafka.FirstOffset, kafka.LastOffset:
	default:
		return nil, fmt.Errorf("consumer group: StartOffset %d is neither kafka.FirstOffset nor kafka.LastOffset", opts.StartOffset)
	}
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = time.Second
	}
	return &GroupConsumer{
		opts: opts, fetch: fetchConfig(opts.MaxWait, opts.MinBytes, opts.MaxBytes), byTopic: byTopic, logger: logger, metrics: m, gm: gm,
		handles: map[groupPartition]*partitionMetricsHandle{},
	}, nil
}

// Assigned returns the partitions of each topic this member reads now.
func (g *GroupConsumer) Assigned() map[string][]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string][]int, len(g.assigned))
	for t, ps := range g.assigned {
		out[t] = slices.Clone(ps)
	}
	return out
}

// Run joins the group and reads what it is assigned until ctx is done;
// then it commits what was processed and leaves the group, so the others
// take the partitions over at once.
func (g *GroupConsumer) Run(ctx context.Context) error {
	first := g.opts.Sources[0]
	topics := slices.Sorted(maps.Keys(g.byTopic))
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: g.opts.GroupID, Brokers: first.Brokers, Dialer: first.Dialer, Topics: topics,
		HeartbeatInterval: g.opts.HeartbeatInterval, SessionTimeout: g.opts.SessionTimeout,
		RebalanceTimeout: g.opts.RebalanceTimeout, StartOffset: g.opts.StartOffset,
		// A topic that gains partitions is rebalanced onto the members.
		WatchPartitionChanges: true,
		Logger:                kafka.LoggerFunc(func(msg string, args ...any) { g.logger.Debug("Consumer group", "kafka", fmt.Sprintf(msg, args...)) }),
		ErrorLogger:           kafka.LoggerFunc(func(msg string, args ...any) { g.logger.Warn("Consumer group", "kafka", fmt.Sprintf(msg, args...)) }),
	})
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", g.opts.GroupID, err)
	}
	// Close ends the current generation (its goroutines see their context
	// end, flush and make the last commit) and leaves the group.
	defer func() {
		if err := cg.Close(); err != nil {
			g.logger.Warn("Leaving consumer group", "group", g.opts.GroupID, "err", err)
		}
	}()
	for {
		gen, err := cg.Next(ctx)
		switch {
		case ctx.Err() != nil, errors.Is(err, kafka.ErrGroupClosed):
			return nil
		case err != nil:
			// kafka-go backs off before it tries to join again.
			g.logger.Warn("Joining consumer group", "group", g.opts.GroupID, "err", err)
			continue
		}
		g.startGeneration(ctx, gen)
	}
}

// groupOffsets are the next offsets to read of a generation's partitions,
// as processed: the committer sends what changed.
type groupOffsets struct {
	mu      sync.Mutex
	next    map[groupPartition]int64
	changed map[groupPartition]bool
}

func (o *groupOffsets) set(p groupPartition, next int64) {
	o.mu.Lock()
	if o.next[p] != next {
		o.next[p] = next
		o.changed[p] = true
	}
	o.mu.Unlock()
}

// take returns the changed offsets in kafka-go's form and forgets them.
func (o *groupOffsets) take() map[string]map[int]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.changed) == 0 {
		return nil
	}
	out := map[string]map[int]int64{}
	for p := range o.changed {
		if out[p.topic] == nil {
			out[p.topic] = map[int]int64{}
		}
		out[p.topic][p.partition] = o.next[p]
	}
	clear(o.changed)
	return out
}

// restore marks offsets whose commit failed as changed again, unless a
// later offset was recorded since.
func (o *groupOffsets) restore(failed map[string]map[int]int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for t, ps := range failed {
		for p, off := range ps {
			k := groupPartition{t, p}
			if o.next[k] == off {
				o.changed[k] = true
			}
		}
	}
}

// startGeneration starts one goroutine per assigned partition and a
// committer, all bound to the generation: kafka-go ends the generation on
// a rebalance and waits for them before joining the next one.
func (g *GroupConsumer) startGeneration(ctx context.Context, gen *kafka.Generation) {
	g.gm.generations.Inc()
	offsets := &groupOffsets{next: map[groupPartition]int64{}, changed: map[groupPartition]bool{}}
	assigned := map[string][]int{}
	var wg sync.WaitGroup
	for topic, as := range gen.Assignments {
		src, ok := g.byTopic[topic]
		if !ok {
			continue
		}
		for _, a := range as {
			assigned[topic] = append(assigned[topic], a.ID)
			wg.Add(1)
			gen.Start(func(gctx context.Context) {
				defer wg.Done()
				pctx, cancel := context.WithCancel(ctx)
				defer cancel()
				stop := context.AfterFunc(gctx, cancel)
				defer stop()
				g.readPartition(pctx, src, a.ID, a.Offset, offsets)
			})
		}
	}
	for t := range assigned {
		slices.Sort(assigned[t])
		g.metrics.partitions.WithLabelValues(t).Add(float64(len(assigned[t])))
	}
	g.mu.Lock()
	g.assigned = assigned
	g.mu.Unlock()
	g.logger.Info("Consumer group generation", "group", gen.GroupID, "generation", gen.ID, "member", gen.MemberID, "assigned", fmt.Sprint(assigned))

	gen.Start(func(gctx context.Context) {
		t := time.NewTicker(g.opts.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				g.commit(gen, offsets)
			case <-gctx.Done():
			case <-ctx.Done():
			}
			if gctx.Err() != nil || ctx.Err() != nil {
				break
			}
		}
		// The partitions stop at a batch boundary and flush; commit what
		// they processed before the next owner starts from it.
		wg.Wait()
		g.commit(gen, offsets)
		g.mu.Lock()
		g.assigned = nil
		g.mu.Unlock()
		for t, ps := range assigned {
			g.metrics.partitions.WithLabelValues(t).Sub(float64(len(ps)))
		}
	})
}

func (g *GroupConsumer) commit(gen *kafka.Generation, offsets *groupOffsets) {
	o := offsets.take()
	if o == nil {
		return
	}
	g.gm.commits.Inc()
	if err := gen.CommitOffsets(o); err != nil {
		g.gm.commitErrors.Inc()
		offsets.restore(o)
		g.logger.Warn("Committing offsets; the records will be read again if the partitions move", "group", gen.GroupID, "err", err)
	}
}

// groupReader is one assigned partition's state.
type groupReader struct {
	recordHandler
	g       *GroupConsumer
	src     Source
	part    int
	offsets *groupOffsets
	next    int64 // next offset to read; kafka.FirstOffset/LastOffset until resolved
}

func (g *GroupConsumer) handle(topic string, part int) *partitionMetricsHandle {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := groupPartition{topic, part}
	h, ok := g.handles[k]
	if !ok {
		h = g.metrics.forTopic(topic) // one lag entry per partition, kept across generations
		g.handles[k] = h
	}
	return h
}

// readPartition reads one partition from offset until ctx ends (the
// generation ended or the consumer stops), reconnecting on errors: a
// partition goroutine that returned early would end the generation for
// every member.
func (g *GroupConsumer) readPartition(ctx context.Context, src Source, part int, offset int64, offsets *groupOffsets) {
	dec, err := g.opts.NewDecoder(src.Format)
	if err != nil {
		g.logger.Error("Decoder", "topic", src.Topic, "err", err) // checked in NewGroupConsumer; cannot happen
		<-ctx.Done()
		return
	}
	r := &groupReader{
		recordHandler: newRecordHandler(dec, g.opts.NewSink(), g.handle(src.Topic, part), g.logger.With("topic", src.Topic, "partition", part)),
		g:             g, src: src, part: part, offsets: offsets, next: offset,
	}
	if r.timed != nil {
		defer r.timed.Done()
	}
	// A session ends without an error only when ctx ends.
	r.keepReading(ctx, func(ctx context.Context) (bool, error) {
		err := r.session(ctx)
		return err == nil, err
	})
}

// session reads from one connection until ctx ends (nil) or it fails.
func (r *groupReader) session(ctx context.Context) error {
	conn, release, err := r.connect(ctx, r.src, r.part)
	if err != nil {
		return err
	}
	defer release()
	// Assigned only on success: a failed look-up must leave the position.
	var at int64
	switch r.next {
	case kafka.FirstOffset:
		if at, err = conn.ReadFirstOffset(); err != nil {
			return fmt.Errorf("read first offset: %w", err)
		}
	case kafka.LastOffset:
		if at, err = conn.ReadLastOffset(); err != nil {
			return fmt.Errorf("read last offset: %w", err)
		}
	default:
		if at, err = r.resumeAt(conn, r.next); err != nil {
			return err
		}
	}
	r.next = at
	if _, err := conn.Seek(r.next, kafka.SeekAbsolute|kafka.SeekDontCheck); err != nil {
		return fmt.Errorf("seek to offset %d: %w", r.next, err)
	}
	key := groupPartition{r.src.Topic, r.part}
	for ctx.Err() == nil {
		if err := conn.SetReadDeadline(fetchDeadline(r.g.fetch)); err != nil {
			return fmt.Errorf("set deadline: %w", err)
		}
		batch := conn.ReadBatchWith(r.g.fetch)
		hwm := batch.HighWaterMark()
		n := 0
		for {
			msg, err := batch.ReadMessage()
			if err != nil {
				break
			}
			r.next = msg.Offset + 1
			r.handle(&msg)
			n++
		}
		berr := batch.Close()
		r.publishNewest()
		if n > 0 {
			// Commit only what the sink has handed on.
			r.sink.Flush()
			r.offsets.set(key, r.next)
		}
		if hwm >= 0 {
			r.pm.lag.Set(float64(max(hwm-r.next, 0)))
		}
		if berr != nil && !errors.Is(berr, io.EOF) {
			if ctx.Err() != nil {
				return nil // the connection was closed to stop the fetch
			}
			if retry, err := r.fetchFailed(berr); !retry {
				return err
			}
		}
	}
	return nil
}
