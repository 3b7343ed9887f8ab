// Package ingest reads the configured Kafka topics with kafka-go: it finds
// every partition, reads each on its own connection from a start time,
// reconnects, sets aside partitions that stall or are missing, and hands
// each record to a decoder (package decode) and the event to a sink (the
// window). It holds no event semantics of its own.
package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/event"
)

// Sink receives the decoded events of one partition. Each partition has its
// own Sink, so a Sink needs no locking; Flush is called after every Kafka
// batch so that buffered events reach the window promptly.
type Sink interface {
	Add(ev *event.Event, d *event.Detail)
	Flush()
}

// TimedSink is a Sink that is also told the Kafka timestamp of every record,
// before the record is decoded (and Added, if it decodes), and when its
// partition is done. Replay uses it to cut every partition at the same
// event-time steps whatever the interleaving of the partitions
// (replay.Replay); the daemon does not need it.
type TimedSink interface {
	Sink
	// Record is called once per record read, with its Kafka time in Unix
	// ns (0 when the record has none).
	Record(kafkaTime int64)
	// Done is called once, after the last Flush, when the partition's
	// goroutine ends: it reached End, or the context ended.
	Done()
}

// Source is one topic on one cluster.
type Source struct {
	Cluster string
	Brokers []string
	Dialer  *kafka.Dialer
	Topic   string
	Format  decode.Format
}

// ConsumerOptions configures a Consumer.
type ConsumerOptions struct {
	Sources []Source
	// Start is the event time every partition seeks to (by Kafka timestamp)
	// before reading: now − window length for a live start, from − window
	// length for replay. Zero reads from the oldest retained record.
	Start time.Time
	// End makes the consumer stop: each partition stops at its high-water
	// mark as of the first fetch, or at its first record past End, whichever
	// comes first. Zero follows the topics forever.
	End time.Time
	// NewSink and NewDecoder are called once per partition.
	NewSink    func() Sink
	NewDecoder func(decode.Format) (*decode.Decoder, error)
	MaxWait    time.Duration
	MinBytes   int
	MaxBytes   int
	// TopicRecheck is how often missing topics and new partitions are looked for.
	TopicRecheck time.Duration
	// MaxAhead, when positive, rejects as ErrTimeRange a record whose event
	// time is more than MaxAhead ahead of the wall clock. Live reading sets
	// it: a record and its Kafka timestamp from a host whose clock runs
	// fast agree with each other, and one such record would move the
	// watermark past the present, so that everything on time counted as
	// late. Replay and simulated times leave it 0.
	MaxAhead time.Duration
	// MissingTopicIsError makes Discover fail when a topic does not exist,
	// naming it, instead of warning and looking again later (tools that
	// must read every topic they are given; replay checks for itself).
	MissingTopicIsError bool
	// MaxPartitionStall is how long a partition may be unreadable, or hold
	// the watermark back, before Assess sets it aside. Default 2 min.
	MaxPartitionStall time.Duration
}

// Consumer reads every partition of every source in parallel, one
// goroutine and one connection per (topic, partition), without a consumer
// group: Kafka is the detector's only state and nothing is committed (a
// restart reads the window back from Kafka; see README "Operations").
type Consumer struct {
	opts    ConsumerOptions
	fetch   kafka.ReadBatchConfig // opts' fetch settings, defaults filled in
	logger  *slog.Logger
	metrics *Metrics

	mu          sync.Mutex
	parts       map[partitionKey]*partState
	missing     map[string]bool // topic → missing at the last discovery
	initialDone bool            // the partitions found at start are started; later ones are late
	warm        bool            // see Assessment.WarmedUp
	low         int64           // the last Assessment.Low after the warm-up
	wg          sync.WaitGroup
}

type partitionKey struct {
	cluster, topic string
	partition      int
}

// NewConsumer returns a Consumer; Run starts it.
func NewConsumer(opts ConsumerOptions, logger *slog.Logger, m *Metrics) (*Consumer, error) {
	if len(opts.Sources) == 0 {
		return nil, errors.New("no topics configured")
	}
	if opts.NewSink == nil || opts.NewDecoder == nil {
		return nil, errors.New("consumer needs NewSink and NewDecoder")
	}
	if opts.TopicRecheck <= 0 {
		opts.TopicRecheck = time.Minute
	}
	if opts.MaxPartitionStall <= 0 {
		opts.MaxPartitionStall = 2 * time.Minute
	}
	for _, s := range opts.Sources {
		if _, err := opts.NewDecoder(s.Format); err != nil {
			return nil, fmt.Errorf("topic %s: %w", s.Topic, err)
		}
	}
	return &Consumer{opts: opts, fetch: fetchConfig(opts.MaxWait, opts.MinBytes, opts.MaxBytes), logger: logger, metrics: m,
		parts: map[partitionKey]*partState{}, missing: map[string]bool{}}, nil
}

// ErrNoBroker is returned when no broker of a cluster answers at start.
var ErrNoBroker = errors.New("no broker reachable")

// ErrRefused is returned when a broker answered but the TLS handshake or
// the SASL authentication failed: the fix is in the credentials or the CA,
// not in the network, so it is not reported as unreachable.
var ErrRefused = errors.New("broker refused the connection")

// refused tells whether a dial error is a TLS or SASL failure.
func refused(err error) bool {
	var ke kafka.Error
	if errors.As(err, &ke) {
		switch ke {
		case kafka.SASLAuthenticationFailed, kafka.UnsupportedSASLMechanism, kafka.IllegalSASLState:
			return true
		}
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		alert     tls.AlertError
	)
	return errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &alert)
}

// Discover checks that every cluster answers and returns the partitions found
// per topic. A topic that does not exist is a warning, not an error: it is
// looked for again every TopicRecheck (Missing lists it meanwhile).
// The result is keyed by the index of the source in ConsumerOptions.Sources.
func (c *Consumer) Discover(ctx context.Context) (map[int][]int, error) {
	out := map[int][]int{}
	reached := map[string]bool{}
	var errs []error
	for i, s := range c.opts.Sources {
		parts, err := c.partitions(ctx, s)
		if err != nil {
			if errors.Is(err, ErrNoBroker) || errors.Is(err, ErrRefused) {
				if !reached[s.Cluster] {
					errs = append(errs, fmt.Errorf("kafka cluster %s (%v): %w", s.Cluster, s.Brokers, err))
					reached[s.Cluster] = true
				}
				continue
			}
			c.metrics.topicMissing(s.Topic, true)
			c.setMissing(s.Topic, true)
			if c.opts.MissingTopicIsError {
				errs = append(errs, fmt.Errorf("topic %s on kafka cluster %s: %w", s.Topic, s.Cluster, err))
				continue
			}
			c.logger.Warn("Topic not found; will look again", "topic", s.Topic, "cluster", s.Cluster, "err", err)
			continue
		}
		c.metrics.topicMissing(s.Topic, false)
		c.setMissing(s.Topic, false)
		out[i] = parts
	}
	return out, errors.Join(errs...)
}

func (c *Consumer) setMissing(topic string, missing bool) {
	c.mu.Lock()
	c.missing[topic] = missing
	c.mu.Unlock()
}

// Missing returns the configured topics the last discovery did not find,
// in configuration order.
func (c *Consumer) Missing() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.opts.Sources {
		if c.missing[s.Topic] && !slices.Contains(out, s.Topic) {
			out = append(out, s.Topic)
		}
	}
	return out
}

func (c *Consumer) partitions(ctx context.Context, s Source) ([]int, error) {
	var lastErr error
	for _, b := range s.Brokers {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := s.Dialer.DialContext(dctx, "tcp", b)
		cancel()
		if err != nil {
			if refused(err) {
				// Every broker of a cluster shares the credentials: trying
				// the next would only repeat the failure.
				return nil, fmt.Errorf("%w: %s: %w", ErrRefused, b, err)
			}
			lastErr = err
			continue
		}
		ps, err := conn.ReadPartitions(s.Topic)
		closeErr := conn.Close()
		if err != nil {
			return nil, fmt.Errorf("read partitions: %w", err)
		}
		if closeErr != nil {
			c.logger.Debug("Closing metadata connection", "err", closeErr)
		}
		ids := make([]int, 0, len(ps))
		for _, p := range ps {
			if p.Topic == s.Topic {
				ids = append(ids, p.ID)
			}
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("topic %s has no partitions", s.Topic)
		}
		return ids, nil
	}
	return nil, fmt.Errorf("%w: %w", ErrNoBroker, lastErr)
}

// Run reads until ctx is done or, with End set, until every partition is
// done. It fails at start when a cluster is unreachable.
func (c *Consumer) Run(ctx context.Context) error {
	found, err := c.Discover(ctx)
	if err != nil {
		return err
	}
	c.start(ctx, found)
	if !c.opts.End.IsZero() {
		// Replay runs over what exists now; no rechecks.
		c.wg.Wait()
		return nil
	}
	t := time.NewTicker(c.opts.TopicRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.wg.Wait()
			return nil
		case <-t.C:
			found, err := c.Discover(ctx)
			if err != nil {
				c.logger.Warn("Topic discovery", "err", err)
			}
			c.start(ctx, found)
		}
	}
}

// start starts a goroutine for each partition found that has none. Those
// of the first call are the warm-up's; later ones (a topic created, a
// partition added) are late: they read from the start position too, but
// do not hold the watermark back until they have caught up.
func (c *Consumer) start(ctx context.Context, found map[int][]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for i, parts := range found {
		s := c.opts.Sources[i]
		for _, p := range parts {
			k := partitionKey{s.Cluster, s.Topic, p}
			if c.parts[k] != nil {
				continue
			}
			// failing is set until the first fetch succeeds: a partition
			// whose leader cannot be dialled is unreadable from the start.
			st := &partState{key: k, requests: s.Format.Requests(), late: c.initialDone, failing: now}
			c.parts[k] = st
			c.metrics.partitions.WithLabelValues(s.Topic).Inc()
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.readPartition(ctx, s, st)
				c.mu.Lock()
				st.done, st.caught = true, true // a finished partition has nothing left to catch up
				c.mu.Unlock()
			}()
		}
	}
	c.initialDone = true
}

// CaughtUp reports whether every partition started so far has read up to the
// high-water mark it saw on its first fetch.
func (c *Consumer) CaughtUp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.parts) == 0 {
		return false
	}
	for _, st := range c.parts {
		if !st.caught {
			return false
		}
	}
	return true
}

// Wait blocks until every partition goroutine has returned.
func (c *Consumer) Wait() { c.wg.Wait() }

// partitionReader is the state of one partition's goroutine.
type partitionReader struct {
	recordHandler
	c    *Consumer
	src  Source
	part int
	st   *partState

	offset     int64 // next offset to read; -1 before the first seek
	stopOffset int64 // with End: the high-water mark at the first fetch
	atOldest   bool  // seekStart found nothing retained before Start: check the first record's time
}

func (c *Consumer) readPartition(ctx context.Context, s Source, st *partState) {
	part := st.key.partition
	dec, err := c.opts.NewDecoder(s.Format)
	if err != nil {
		c.logger.Error("Decoder", "topic", s.Topic, "err", err) // checked in NewConsumer; cannot happen
		return
	}
	r := &partitionReader{
		recordHandler: newRecordHandler(dec, c.opts.NewSink(), c.metrics.forTopic(s.Topic), c.logger.With("topic", s.Topic, "partition", part)),
		c:             c, src: s, part: part, st: st,
		offset: -1, stopOffset: -1,
	}
	if r.timed != nil {
		defer r.timed.Done()
	}
	r.keepReading(ctx, func(ctx context.Context) (bool, error) {
		done, err := r.session(ctx)
		if err != nil {
			r.failed(err)
		}
		return done, err
	})
}

// failed records that the partition cannot be read at the moment.
func (r *partitionReader) failed(err error) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.st.failing.IsZero() {
		r.st.failing = time.Now()
	}
	r.st.idle = false
	r.st.lastError = err.Error()
}

// fetched publishes a fetch's outcome: ok when the broker answered.
func (r *partitionReader) fetched(ok bool, hwm int64) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	st := r.st
	st.progress = max(st.progress, r.newest)
	if !ok {
		if st.failing.IsZero() {
			st.failing = time.Now()
		}
		st.idle = false
		return
	}
	st.failing, st.lastError = time.Time{}, ""
	st.offset = r.offset
	st.idle = r.offset >= hwm
	if r.stopOffset >= 0 && r.offset >= r.stopOffset {
		st.caught = true
	}
}

// session reads from one connection until it fails. done means the
// partition has nothing more to read (replay reached its end).
func (r *partitionReader) session(ctx context.Context) (done bool, err error) {
	conn, release, err := r.connect(ctx, r.src, r.part)
	if err != nil {
		return false, err
	}
	defer release()
	// Assigned only on success: a failed look-up must leave the position.
	var at int64
	if r.offset < 0 {
		at, err = r.seekStart(conn)
		if err == nil {
			r.c.mu.Lock()
			r.st.startOff, r.st.offset = at, at
			r.c.mu.Unlock()
		}
	} else {
		at, err = r.resumeAt(conn, r.offset)
	}
	if err != nil {
		return false, err
	}
	r.offset = at
	if _, err := conn.Seek(r.offset, kafka.SeekAbsolute|kafka.SeekDontCheck); err != nil {
		return false, fmt.Errorf("seek to offset %d: %w", r.offset, err)
	}
	for ctx.Err() == nil {
		if err := conn.SetReadDeadline(fetchDeadline(r.c.fetch)); err != nil {
			return false, fmt.Errorf("set deadline: %w", err)
		}
		if r.c.opts.MaxAhead > 0 { // once per fetch, not per record
			r.notAfter = time.Now().Add(r.c.opts.MaxAhead).UnixNano()
		}
		batch := conn.ReadBatchWith(r.c.fetch)
		hwm := batch.HighWaterMark()
		if batch.Err() != nil {
			// The fetch failed before its response: the high-water mark
			// is not the broker's (0) and must not end the warm-up.
			hwm = -1
		}
		if r.stopOffset < 0 {
			r.stopOffset = hwm
		}
		past := false
		for {
			msg, err := batch.ReadMessage()
			if err != nil {
				break
			}
			r.offset = msg.Offset + 1
			if r.atOldest {
				r.atOldest = false
				r.checkOldest(msg.Time)
			}
			if !r.c.opts.End.IsZero() && msg.Time.After(r.c.opts.End) {
				past = true
				break
			}
			r.handle(&msg)
		}
		berr := batch.Close()
		r.sink.Flush()
		r.publishNewest()
		if hwm >= 0 {
			r.pm.lag.Set(float64(max(hwm-r.offset, 0)))
		}
		r.fetched(hwm >= 0 && fetchAnswered(berr), hwm)
		if !r.c.opts.End.IsZero() && (past || r.offset >= r.stopOffset) {
			return true, nil
		}
		if berr != nil && !errors.Is(berr, io.EOF) {
			if retry, err := r.fetchFailed(berr); !retry {
				return false, err
			}
		}
	}
	return false, nil
}

// seekStart finds the first offset at or after Start by Kafka timestamp.
// With End, it also finds the offset where reading will stop (the first
// record past End, else the end of the log), for progress.
func (r *partitionReader) seekStart(conn *kafka.Conn) (int64, error) {
	first, err := conn.ReadFirstOffset()
	if err != nil {
		return 0, fmt.Errorf("read first offset: %w", err)
	}
	if !r.c.opts.End.IsZero() {
		end, err := conn.ReadOffset(r.c.opts.End.Add(time.Millisecond))
		if err != nil {
			return 0, fmt.Errorf("read offset at %s: %w", r.c.opts.End.Format(time.RFC3339), err)
		}
		if end < 0 {
			if end, err = conn.ReadLastOffset(); err != nil {
				return 0, fmt.Errorf("read last offset: %w", err)
			}
		}
		r.c.mu.Lock()
		r.st.endOff = end
		r.c.mu.Unlock()
	}
	if r.c.opts.Start.IsZero() {
		return first, nil
	}
	off, err := conn.ReadOffset(r.c.opts.Start)
	if err != nil {
		return 0, fmt.Errorf("read offset at %s: %w", r.c.opts.Start.Format(time.RFC3339), err)
	}
	if off < 0 { // nothing at or after Start: begin at the end
		if off, err = conn.ReadLastOffset(); err != nil {
			return 0, fmt.Errorf("read last offset: %w", err)
		}
	}
	// Starting at the oldest record retained: the range may begin before it.
	r.atOldest = off <= first
	return off, nil
}

// checkOldest records that the partition's oldest retained record is
// newer than Start (by more than a second: timestamps of the same moment
// are not a gap), so the range begins before what Kafka still holds.
func (r *partitionReader) checkOldest(t time.Time) {
	if t.IsZero() || !t.After(r.c.opts.Start.Add(time.Second)) {
		return
	}
	r.c.mu.Lock()
	r.st.oldest = t
	r.c.mu.Unlock()
	r.logger.Warn("The range starts before the oldest record retained; the start is missing from this partition",
		"start", r.c.opts.Start.UTC().Format(time.RFC3339), "oldest_retained", t.UTC().Format(time.RFC3339))
}

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

// NewDialer builds a kafka-go Dialer with TLS and SASL as configured.
func NewDialer(clientID string, tlsConfig *tls.Config, mech sasl.Mechanism) *kafka.Dialer {
	d := &kafka.Dialer{ClientID: clientID, Timeout: 10 * time.Second, DualStack: true, TLS: tlsConfig}
	if mech != nil {
		d.SASLMechanism = mech
	}
	bufferReads(d)
	return d
}
