package simulate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
)

// Producer writes simulated records into Kafka the way the fleet's rsyslog
// (omkafka, librdkafka) producers do: asynchronously, in large compressed
// batches, with a bounded amount of data waiting for the broker.
// KafkaSink's synchronous writes wait for every batch of the call, partial
// ones included, before the simulator may go on; here the simulator runs
// while the batches are compressed and written.
//
// Order: Sink hands the Writer the records in event-time order, and the
// Writer writes each partition's batches one at a time, in order, so every
// partition holds its records in the order they were simulated, and in the
// same partitions as with KafkaSink (kafka.Hash of the key).
//
// One Writer: kafka-go already sends the batches of different partitions
// concurrently, each request on a connection of its own, and compresses
// on that connection's goroutine; a partition's batches go one request at
// a time. A second Writer per half of the partitions measured slower (207k
// against 223–256k records/s with lz4).
//
// A batch's buffer is reused once the broker has acknowledged every record
// in it (Completion). kafka-go calls Completion after its last attempt; a
// request that timed out while still being encoded and then succeeded on
// retry could, in principle, still be reading the buffer. That takes a
// goroutine starved for the whole write timeout (10 s); so does the
// reordering a retry can cause without idempotent writes.
type Producer struct {
	opts ProducerOptions
	w    *kafka.Writer
	own  *kafka.Transport // the Writer's, when the options gave none
	// arenas are the buffers of batches the broker has acknowledged, for
	// reuse (a sync.Pool would drop them at every GC, and fresh memory
	// costs page faults as it is first written).
	arenas chan *arena

	mu       sync.Mutex
	space    *sync.Cond // signalled as batches complete
	inflight int64      // key and value bytes handed over, not yet acknowledged
	err      error      // the first write error

	written atomic.Int64 // records the broker acknowledged
}

// ProducerOptions configures a Producer. Zero values take the defaults.
type ProducerOptions struct {
	Brokers []string
	// Compression of the record batches; zero is none.
	// DefaultProducerCompression is what Wikimedia's rsyslog producers use.
	Compression compress.Compression
	// MaxInflight bounds the key and value bytes waiting for the broker;
	// the Sink blocks above it. Default 64 MiB.
	MaxInflight int64
	// Transport, when set, is the Writer's (tests close its connections).
	Transport kafka.RoundTripper
}

// Compressions returns the names ParseCompression takes, as the flags
// offer them.
func Compressions() []string { return []string{"none", "gzip", "snappy", "lz4", "zstd"} }

// ParseCompression maps a compression name (one of Compressions) to
// kafka-go's codec; "none" is zero. kafka-go's own other spellings
// ("uncompressed", codec numbers) are refused, so a name means one thing.
func ParseCompression(name string) (compress.Compression, error) {
	if !slices.Contains(Compressions(), name) {
		return 0, fmt.Errorf("compression %q: want one of %v", name, Compressions())
	}
	if name == "none" {
		return 0, nil
	}
	var c compress.Compression
	if err := c.UnmarshalText([]byte(name)); err != nil {
		return 0, fmt.Errorf("compression %q: %w", name, err)
	}
	return c, nil
}

// CompressionName is ParseCompression's inverse: c's name, "none" for zero.
func CompressionName(c compress.Compression) string {
	if c == 0 {
		return "none"
	}
	return c.String()
}

// Producer defaults.
const (
	DefaultProducerCompression = compress.Snappy
	DefaultMaxInflight         = 64 << 20
	// producerBatchBytes keeps each batch under the broker's default
	// message.max.bytes (1 MiB) even uncompressed.
	producerBatchBytes = 1 << 20
	// producerBatchSize is more records than producerBatchBytes holds of
	// 1.6-KB access-log records: those batches close on bytes. Not much
	// more, as kafka-go allocates room for this many messages in every
	// batch (2000 measured no faster).
	producerBatchSize = 700
	// producerLinger is how long a partial batch waits for more records,
	// as librdkafka's linger.ms: long enough to fill batches at speed,
	// short against the window's 10-s buckets when the simulation runs in
	// real time.
	producerLinger = 20 * time.Millisecond
	// producerArenas is how many acknowledged batch buffers are kept:
	// enough for DefaultMaxInflight of simulator batches of 1000 records.
	producerArenas = 64
)

// arena holds one Sink call's keys and values until the broker has
// acknowledged every record in it; then it is reused.
type arena struct {
	buf  []byte
	refs atomic.Int64
}

// NewProducer returns a Producer; Close it to flush.
func NewProducer(opts ProducerOptions) (*Producer, error) {
	switch {
	case len(opts.Brokers) == 0:
		return nil, errors.New("producer: no brokers")
	case opts.MaxInflight < 0:
		return nil, fmt.Errorf("producer: max inflight %d is negative", opts.MaxInflight)
	}
	if opts.MaxInflight == 0 {
		opts.MaxInflight = DefaultMaxInflight
	}
	p := &Producer{opts: opts, arenas: make(chan *arena, producerArenas)}
	p.space = sync.NewCond(&p.mu)
	tr := opts.Transport
	if tr == nil {
		p.own = &kafka.Transport{}
		tr = p.own
	}
	p.w = &kafka.Writer{
		Addr: kafka.TCP(opts.Brokers...), Balancer: &kafka.Hash{}, Transport: tr,
		Async: true, Compression: opts.Compression, RequiredAcks: kafka.RequireOne,
		BatchSize: producerBatchSize, BatchBytes: producerBatchBytes, BatchTimeout: producerLinger,
		Completion: p.completed,
	}
	return p, nil
}

// completed is the Writer's callback for each written (or failed) batch.
func (p *Producer) completed(msgs []kafka.Message, err error) {
	var n int64
	for _, m := range msgs {
		n += int64(len(m.Key) + len(m.Value))
		if a, ok := m.WriterData.(*arena); ok && a.refs.Add(-1) == 0 {
			select {
			case p.arenas <- a:
			default:
			}
		}
	}
	p.mu.Lock()
	p.inflight -= n
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("writing %d records to kafka: %w", len(msgs), err)
	}
	p.mu.Unlock()
	p.space.Broadcast()
	if err == nil {
		p.written.Add(int64(len(msgs)))
	}
}

// Sink returns the Sink to give Run. It copies each batch (Run reuses its
// buffers) into a buffer of its own, hands it to the Writers and returns at
// once, unless MaxInflight bytes are waiting for the broker. It returns the
// first write error the broker reported. Not safe for concurrent use, which
// Run never needs.
func (p *Producer) Sink() Sink {
	var msgs []kafka.Message
	return func(ctx context.Context, batch []Record) error {
		size := 0
		for _, r := range batch {
			size += len(r.Key) + len(r.Value)
		}
		if err := p.reserve(ctx, int64(size)); err != nil {
			return err
		}
		var a *arena
		select {
		case a = <-p.arenas:
		default:
		}
		if a == nil || cap(a.buf) < size {
			a = &arena{buf: make([]byte, 0, size)}
		}
		a.buf = a.buf[:0]
		a.refs.Store(int64(len(batch)))
		msgs = msgs[:0]
		for _, r := range batch {
			k := len(a.buf)
			a.buf = append(a.buf, r.Key...)
			v := len(a.buf)
			a.buf = append(a.buf, r.Value...)
			m := kafka.Message{Topic: r.Topic, Time: r.Time, WriterData: a,
				Key: a.buf[k:v:v], Value: a.buf[v:len(a.buf):len(a.buf)]}
			if r.Key == nil {
				m.Key = nil
			}
			if r.Value == nil {
				m.Value = nil
			}
			msgs = append(msgs, m)
		}
		// The Writer keeps the messages, not the slice.
		if err := p.w.WriteMessages(ctx, msgs...); err != nil {
			// Refused before any was queued (too large, unknown topic).
			err = fmt.Errorf("writing %d records to kafka: %w", len(msgs), err)
			p.mu.Lock()
			p.inflight -= int64(size)
			if p.err == nil {
				p.err = err
			}
			p.mu.Unlock()
			return err
		}
		clear(msgs)
		return nil
	}
}

// reserve waits until size more bytes may be in flight, and counts them.
func (p *Producer) reserve(ctx context.Context, size int64) error {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock() // a waiter checks ctx under the lock: wake it after its check
		defer p.mu.Unlock()
		p.space.Broadcast()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	// A batch larger than the bound alone goes through.
	for p.inflight > 0 && p.inflight+size > p.opts.MaxInflight && p.err == nil && ctx.Err() == nil {
		p.space.Wait()
	}
	switch {
	case p.err != nil:
		return p.err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	p.inflight += size
	return nil
}

// Written is how many records the broker has acknowledged so far.
func (p *Producer) Written() int64 { return p.written.Load() }

// Close writes what is pending, waits for the broker and returns the
// first write error.
func (p *Producer) Close() error {
	cerr := p.w.Close()
	if p.own != nil {
		p.own.CloseIdleConnections() // Writer.Close leaves them open
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.err, cerr)
}
