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
	"log/slog"
	"slices"
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
	// the watermark back, before Assess sets it aside.
	MaxPartitionStall time.Duration
}

// Defaults of what ConsumerOptions leaves unset. config.Default reads
// them, and so does markertopic's reader, so that a hand-built Options, the
// configuration and the other consumer agree.
const (
	DefaultMaxWait           = 250 * time.Millisecond // a short long-poll, so that shutdown is quick
	DefaultMinBytes          = 1
	DefaultMaxBytes          = 16 << 20
	DefaultTopicRecheck      = time.Minute
	DefaultMaxPartitionStall = 2 * time.Minute
)

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
		opts.TopicRecheck = DefaultTopicRecheck
	}
	if opts.MaxPartitionStall <= 0 {
		opts.MaxPartitionStall = DefaultMaxPartitionStall
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

// NewDialer builds a kafka-go Dialer with TLS and SASL as configured.
func NewDialer(clientID string, tlsConfig *tls.Config, mech sasl.Mechanism) *kafka.Dialer {
	d := &kafka.Dialer{ClientID: clientID, Timeout: 10 * time.Second, DualStack: true, TLS: tlsConfig}
	if mech != nil {
		d.SASLMechanism = mech
	}
	bufferReads(d)
	return d
}
