// Package ingestbench is the ingest benchmark of issue 3 and the
// performance bars: it loads realistic httpd access-log records (the
// simulator's, in the real wire format) into kfake once, then in one run
// times, over the same records,
//
//	(a) raw: kafka-go at its best over all partitions in parallel
//	    (Conn.ReadBatch, 16-MiB fetches, Batch.Read into one reused
//	    buffer; see ReadRaw), counting records and bytes and nothing
//	    else: the ceiling set by the client library and the broker;
//	(b) consumer: ingest.Consumer with the real decoders and a sink that
//	    only counts;
//	(c) pipeline: pipeline.New/Run through a real window.Store and
//	    detect.Detector, evaluating as the watermark moves, stopping at the
//	    high-water mark (End set).
//
// It reports events/s for each and the ratios b/a and c/a, so that
// machine noise cancels (docs/design.md section 8), plus wall and client-CPU
// µs/msg, allocs/msg and GC counts. Optional runs repeat (a) and (b) with a
// large read buffer under kafka-go's connection (bufConn) and consume with
// franz-go (franzStage), to show what the client library costs. The broker
// should run in its own process (Child):
// on the 2-core machine an in-process kfake takes CPU and allocations that
// would be charged to the client. Run it with
//
//	go run ./benchmarks/ingest/cmd/ingestbench
package ingestbench

// This file is one benchmark command's body: configuration, the stages
// (a)-(c) and the optional client comparisons, and the run loop that
// alternates them, in the order the report prints them; the broker, the
// client-side fetch and the report are in files of their own.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/pipeline"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Config says what to benchmark. Zero values take the defaults.
type Config struct {
	// Records is how many access-log records to load. Default 1,000,000
	// (the minimum).
	Records int
	// Partitions of the topic. Default 4.
	Partitions int
	// Rate is the simulated train fleet's requests/s. Default 20,000, the
	// real fleet's rate: each 10-s bucket then holds what it holds in
	// production, so detection costs per event what it costs there. The
	// simulator's own default (400) would spread 1M records over 42
	// simulated minutes, 50 times more evaluations per event than real.
	Rate float64
	// Seed of the simulator.
	Seed int64
	// Compression of the loaded record batches. Default none.
	Compression compress.Compression
	// Rounds repeats (a), (b), (c) over the same loaded records. Default 1.
	Rounds int
	// Topic is the access-log topic name. Default mediawiki.httpd.accesslog.
	Topic string
	// MaxBytes, MinBytes and MaxWait are the fetch settings, the same for
	// every run. Defaults: the detector's (config.Default).
	MaxBytes int
	MinBytes int
	MaxWait  time.Duration
	// Broker holds the records. Nil starts kfake in this process (and
	// closes it at the end); pass a Child to keep the broker's CPU apart.
	Broker Broker
	// ReadBuffer, when positive, adds two runs, (a) and (b) again with
	// connections that read the socket through a buffer of this many bytes
	// under kafka-go's own 4-KiB one (see bufConn): the experiment behind
	// a suggested change to ingest.NewDialer. (c) cannot take it, as
	// pipeline.New builds its own dialer.
	ReadBuffer int
	// FranzGo adds a run of franz-go's consumer over the same records, a
	// second raw baseline (see franzStage).
	FranzGo bool
	// ClientFetch adds a run of kafka-go's other read path, Client.Fetch,
	// which decodes a fetch into pooled pages instead of copying each
	// value (see clientFetchStage).
	ClientFetch bool
	// CPUProfile, when set, is the path prefix of a CPU profile written
	// for each run: <prefix>-<round>-<run>.pprof.
	CPUProfile string
	Logger     *slog.Logger
}

// Defaults.
const (
	DefaultRecords    = 1_000_000
	DefaultPartitions = 4
	DefaultRate       = 20_000.0
)

func (c Config) withDefaults() (Config, error) {
	def := config.Default().Kafka
	if c.Records == 0 {
		c.Records = DefaultRecords
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Rounds == 0 {
		c.Rounds = 1
	}
	if c.Topic == "" {
		c.Topic = simulate.DefaultAccessLog
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = def.MaxBytes
	}
	if c.MinBytes == 0 {
		c.MinBytes = def.MinBytes
	}
	if c.MaxWait == 0 {
		c.MaxWait = time.Duration(def.MaxWait)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Records < 0:
		return c, fmt.Errorf("records: %d is negative", c.Records)
	case c.Partitions < 1 || c.Partitions > 1024:
		return c, fmt.Errorf("partitions: %d is outside 1-1024", c.Partitions)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return c, fmt.Errorf("rate: %v is not a finite number >= 0", c.Rate)
	case c.Rounds < 0:
		return c, fmt.Errorf("rounds: %d is negative", c.Rounds)
	case c.ReadBuffer < 0 || c.ReadBuffer > 64<<20:
		return c, fmt.Errorf("read buffer: %d is outside 0-64 MiB", c.ReadBuffer)
	case c.MaxBytes < 1 || c.MinBytes < 1 || c.MinBytes > c.MaxBytes || c.MaxWait <= 0:
		return c, fmt.Errorf("fetch settings: min bytes %d, max bytes %d, max wait %v: want 1 <= min <= max and max wait > 0", c.MinBytes, c.MaxBytes, c.MaxWait)
	}
	return c, nil
}

// Run names.
const (
	RunRaw              = "raw"
	RunConsumer         = "consumer"
	RunPipeline         = "pipeline"
	RunRawBuffered      = "raw-buffered"
	RunConsumerBuffered = "consumer-buffered"
	RunFranzGo          = "raw-franz-go"
	RunClientFetch      = "raw-client-fetch"
)

const defaultDialTimeout = 10 * time.Second

// Result is one timed run.
type Result struct {
	Name     string
	Records  int64 // Kafka records read
	Bytes    int64 // value bytes read (franz-go and Client.Fetch: key and value)
	Events   int64 // records decoded into events (raw: Records)
	Skipped  int64 // well-formed records not counted (consumer, pipeline)
	Rejected int64 // malformed records (consumer, pipeline)
	Wall     time.Duration
	// CPU is this process's CPU time over the run: the client's, plus the
	// broker's when it runs in process (BrokerSeparate false).
	CPU       time.Duration
	BrokerCPU time.Duration // 0 when unknown
	Mallocs   uint64        // heap allocations in this process over the run
	GCs       uint32        // garbage collections over the run
	// Pipeline only: events the window applied, evaluations run and their
	// total time.
	Windowed    int64
	Evaluations int64
	EvalTime    time.Duration
}

// PerSecond is records read per wall second.
func (r Result) PerSecond() float64 { return float64(r.Records) / r.Wall.Seconds() }

// WallMicros is wall µs per record.
func (r Result) WallMicros() float64 { return r.Wall.Seconds() * 1e6 / float64(r.Records) }

// CPUMicros is this process's CPU µs per record.
func (r Result) CPUMicros() float64 { return r.CPU.Seconds() * 1e6 / float64(r.Records) }

// PerCore is records per CPU second of this process: the rate one core
// sustains on the client side.
func (r Result) PerCore() float64 { return float64(r.Records) / r.CPU.Seconds() }

// AllocsPerRecord is heap allocations per record.
func (r Result) AllocsPerRecord() float64 { return float64(r.Mallocs) / float64(r.Records) }

// Round is one sequence of runs: (a), (b), (c), then the buffered
// variants if asked for.
type Round struct{ Results []Result }

// Get returns the result of the named run, the zero Result if there is none.
func (rd Round) Get(name string) Result {
	for _, r := range rd.Results {
		if r.Name == name {
			return r
		}
	}
	return Result{}
}

// Report is what Run measured.
type Report struct {
	Config         Config
	Records        int64 // loaded
	Bytes          int64 // key and value bytes loaded
	From, To       time.Time
	Load           time.Duration
	BrokerSeparate bool
	GOMAXPROCS     int
	GOGC           string // the GOGC and GOMEMLIMIT environment, as run
	Rounds         []Round
}

// Run loads the records and times the runs.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("ingest benchmark config: %w", err)
	}
	wikis, err := wikimap.Default()
	if err != nil {
		return nil, fmt.Errorf("wiki map: %w", err)
	}
	broker := cfg.Broker
	if broker == nil {
		ip, err := StartInProcess(cfg.Topic, cfg.Partitions)
		if err != nil {
			return nil, err
		}
		defer func() { _ = ip.Close() }()
		broker = ip
	}
	_, separate := broker.CPU()
	rep := &Report{Config: cfg, BrokerSeparate: separate, GOMAXPROCS: runtime.GOMAXPROCS(0),
		GOGC: fmt.Sprintf("GOGC=%s GOMEMLIMIT=%s", envOr("GOGC", "100"), envOr("GOMEMLIMIT", "off"))}
	start := time.Now()
	if err := load(ctx, cfg, wikis, broker.Addrs(), rep); err != nil {
		return nil, err
	}
	rep.Load = time.Since(start)
	cfg.Logger.Info("Records loaded", "records", rep.Records, "bytes", rep.Bytes, "duration", rep.Load)

	e := &env{cfg: cfg, wikis: wikis, addrs: broker.Addrs(), from: rep.From, to: rep.To, records: rep.Records,
		dialer: ingest.NewDialer("ingestbench", nil, nil)}
	runs := []runSpec{
		{RunRaw, newRawStage},
		{RunConsumer, newConsumerStage},
		{RunPipeline, newPipelineStage},
	}
	if cfg.ReadBuffer > 0 {
		buffered := func(build func(*env) (stage, error)) func(*env) (stage, error) {
			return func(e *env) (stage, error) {
				be := *e
				be.dialer = bufferedDialer("ingestbench", cfg.ReadBuffer)
				return build(&be)
			}
		}
		runs = append(runs, runSpec{RunRawBuffered, buffered(newRawStage)}, runSpec{RunConsumerBuffered, buffered(newConsumerStage)})
	}
	if cfg.FranzGo {
		runs = append(runs, runSpec{RunFranzGo, newFranzStage})
	}
	if cfg.ClientFetch {
		runs = append(runs, runSpec{RunClientFetch, newClientFetchStage})
	}
	// One untimed pass first: the broker's first read of freshly loaded
	// data is slower than later ones, which would make (a), run first,
	// look slow and flatter the ratios.
	if _, err := measure(ctx, e, broker, "warmup", 0, newRawStage); err != nil {
		return nil, fmt.Errorf("warm-up read: %w", err)
	}
	for round := 1; round <= cfg.Rounds; round++ {
		var rd Round
		for _, s := range runs {
			r, err := measure(ctx, e, broker, s.name, round, s.new)
			if err != nil {
				return nil, fmt.Errorf("round %d, run %s: %w", round, s.name, err)
			}
			if r.Records != rep.Records {
				return nil, fmt.Errorf("round %d, run %s: read %d records, %d were loaded", round, s.name, r.Records, rep.Records)
			}
			rd.Results = append(rd.Results, r)
			cfg.Logger.Info("Run done", "round", round, "run", s.name, "records_per_second", int64(r.PerSecond()))
		}
		rep.Rounds = append(rep.Rounds, rd)
	}
	return rep, nil
}

// runSpec names a run and builds its stage.
type runSpec struct {
	name string
	new  func(*env) (stage, error)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// errEnough stops the simulator once enough records are loaded.
var errEnough = errors.New("enough records")

// Loaded describes what LoadAccessLogs wrote.
type Loaded struct {
	Records, Bytes int64
	From, To       time.Time // event times of the first and last record
}

// LoadOptions says what LoadAccessLogs writes where.
type LoadOptions struct {
	Addrs   []string
	Topic   string
	Records int     // access-log records to write
	Rate    float64 // the simulated train fleet's requests/s
	Seed    int64
	Wikis   *wikimap.Map
	// Compression of the record batches (zero: none). Wikimedia's
	// producers compress; uncompressed records cost the broker and the
	// loopback more per record and the client less (README, Performance).
	Compression compress.Compression
}

// LoadAccessLogs writes o.Records access-log records of the simulator's
// "quiet" scenario at o.Rate requests/s into o.Topic, keyed by request id
// (as the simulator keys them) and timestamped with their event time. The
// ingest and replay benchmarks load their brokers with it.
func LoadAccessLogs(ctx context.Context, o LoadOptions) (Loaded, error) {
	var l Loaded
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections() // Writer.Close leaves its Transport's connections open
	w := &kafka.Writer{
		Addr: kafka.TCP(o.Addrs...), Topic: o.Topic, Transport: tr, Balancer: &kafka.Hash{},
		BatchSize: 10000, BatchBytes: 1 << 20, // kfake's default message.max.bytes
		BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireOne, Compression: o.Compression,
	}
	records, wikis := o.Records, o.Wikis
	// The daily cycle is near its mean at the scenario's noon start; twice
	// the expected span leaves room, and the sink stops early.
	span := time.Duration(2*float64(records)/o.Rate*float64(time.Second)) + time.Minute
	sim := simulate.Config{Scenario: "quiet", Seed: o.Seed, Rate: o.Rate, Duration: span, BatchSize: 10000}
	msgs := make([]kafka.Message, 0, sim.BatchSize)
	n := 0
	_, err := simulate.Run(ctx, sim, wikis, func(ctx context.Context, batch []simulate.Record) error {
		msgs = msgs[:0]
		for _, r := range batch {
			if r.Topic != simulate.DefaultAccessLog || n == records {
				continue
			}
			if n == 0 {
				l.From = r.Time
			}
			l.To = r.Time
			n++
			l.Bytes += int64(len(r.Key) + len(r.Value))
			msgs = append(msgs, kafka.Message{Key: r.Key, Value: r.Value, Time: r.Time})
		}
		if len(msgs) > 0 {
			// Synchronous: the simulator reuses the buffers after we return.
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				return writeError(len(msgs), err)
			}
		}
		if n == records {
			return errEnough
		}
		return nil
	})
	cerr := w.Close()
	if err != nil && !errors.Is(err, errEnough) {
		return l, fmt.Errorf("load records: %w", err)
	}
	if cerr != nil {
		return l, fmt.Errorf("close writer: %w", cerr)
	}
	if n < records {
		return l, fmt.Errorf("load records: the scenario yielded %d access-log records, want %d: raise the rate", n, records)
	}
	l.Records = int64(n)
	return l, nil
}

// load fills the benchmark's topic and checks the broker holds it all.
func load(ctx context.Context, cfg Config, wikis *wikimap.Map, addrs []string, rep *Report) error {
	l, err := LoadAccessLogs(ctx, LoadOptions{Addrs: addrs, Topic: cfg.Topic, Records: cfg.Records, Rate: cfg.Rate,
		Seed: cfg.Seed, Wikis: wikis, Compression: cfg.Compression})
	if err != nil {
		return err
	}
	rep.Records, rep.Bytes, rep.From, rep.To = l.Records, rep.Bytes+l.Bytes, l.From, l.To
	// Check what the broker holds, so a lost write fails here and not as
	// a short count in every run.
	held, err := heldRecords(ctx, addrs[0], cfg.Topic, cfg.Partitions)
	if err != nil {
		return err
	}
	if held != rep.Records {
		return fmt.Errorf("broker holds %d records, %d were written", held, rep.Records)
	}
	return nil
}

// writeError keeps one of kafka-go's per-message errors: a batch's
// WriteErrors would print thousands.
func writeError(n int, err error) error {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				return fmt.Errorf("write %d records: %d failed, the first with: %w", n, we.Count(), e)
			}
		}
	}
	return fmt.Errorf("write %d records: %w", n, err)
}

func heldRecords(ctx context.Context, addr, topic string, partitions int) (int64, error) {
	d := &kafka.Dialer{Timeout: defaultDialTimeout}
	var total int64
	for p := range partitions {
		conn, err := d.DialLeader(ctx, "tcp", addr, topic, p)
		if err != nil {
			return 0, fmt.Errorf("dial partition %d: %w", p, err)
		}
		first, last, err := conn.ReadOffsets()
		cerr := conn.Close()
		if err := errors.Join(err, cerr); err != nil {
			return 0, fmt.Errorf("read offsets of partition %d: %w", p, err)
		}
		total += last - first
	}
	return total, nil
}

// env is what every run shares.
type env struct {
	cfg      Config
	wikis    *wikimap.Map
	addrs    []string
	from, to time.Time
	dialer   *kafka.Dialer // of the raw and consumer runs
	records  int64         // loaded
}

func (e *env) batchConfig() kafka.ReadBatchConfig {
	return kafka.ReadBatchConfig{MinBytes: e.cfg.MinBytes, MaxBytes: e.cfg.MaxBytes, MaxWait: e.cfg.MaxWait}
}

// end is the End of the consumer and pipeline runs: after the last record,
// so each partition stops at its high-water mark.
func (e *env) end() time.Time { return e.to.Add(time.Second) }

// stage is one kind of run: built outside the timing, run inside it.
type stage interface {
	run(ctx context.Context) error
	// result fills the counts after the run.
	result(r *Result) error
	close() error
}

// measure builds a stage, then times its run with the process's CPU time,
// the broker's CPU time and the heap allocations.
func measure(ctx context.Context, e *env, broker Broker, name string, round int, build func(*env) (stage, error)) (Result, error) {
	st, err := build(e)
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = st.close() }()
	if e.cfg.CPUProfile != "" && round > 0 {
		f, err := os.Create(fmt.Sprintf("%s-%d-%s.pprof", e.cfg.CPUProfile, round, name))
		if err != nil {
			return Result{}, fmt.Errorf("cpu profile: %w", err)
		}
		defer func() { _ = f.Close() }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return Result{}, fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	runtime.GC() // start every run with the same clean heap
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	mark := MarkCPU(broker)
	t0 := time.Now()
	err = st.run(ctx)
	wall := time.Since(t0)
	cpu, bcpu, _ := mark.Since(broker) // bcpu is 0 when unknown
	runtime.ReadMemStats(&m1)
	if err != nil {
		return Result{}, err
	}
	r := Result{Name: name, Wall: wall, CPU: cpu, BrokerCPU: bcpu, Mallocs: m1.Mallocs - m0.Mallocs, GCs: m1.NumGC - m0.NumGC}
	if err := st.result(&r); err != nil {
		return Result{}, err
	}
	return r, nil
}

// rawStage is (a): one goroutine and one kafka-go Conn per partition,
// reading from the first offset to the high-water mark with ReadBatchWith
// and the same fetch settings as the Consumer, counting bytes.
type rawStage struct {
	e *env
	counted
}

// counted is what a raw run counts, added to by each partition at its end.
type counted struct{ records, bytes atomic.Int64 }

func (c *counted) add(records, bytes int64) {
	c.records.Add(records)
	c.bytes.Add(bytes)
}

func (c *counted) result(r *Result) error {
	r.Records, r.Bytes = c.records.Load(), c.bytes.Load()
	r.Events = r.Records
	return nil
}

// eachPartition runs read for every partition in parallel, as the
// Consumer does.
func eachPartition(n int, read func(p int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for p := range n {
		wg.Go(func() { errs[p] = read(p) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func newRawStage(e *env) (stage, error) { return &rawStage{e: e}, nil }

func (s *rawStage) run(ctx context.Context) error {
	return eachPartition(s.e.cfg.Partitions, func(p int) error { return s.readPartition(ctx, s.e.dialer, p) })
}

func (s *rawStage) readPartition(ctx context.Context, d *kafka.Dialer, p int) error {
	records, bytes, err := ReadRaw(ctx, d, s.e.addrs[0], s.e.cfg.Topic, p, s.e.batchConfig())
	if err != nil {
		return err
	}
	s.add(records, bytes)
	return nil
}

// ReadRaw reads partition p of topic from its first to its last offset with
// kafka-go at its best and only counts the records and their value bytes:
// the ceiling of this benchmark and of the replay one. Conn.ReadBatch and
// Batch.Read copy each value into one reused buffer (no allocation per
// record; the key is skipped), where Batch.ReadMessage would allocate a key
// and a value for every record. Records a fetch returns from before the
// requested offset (a record batch is returned whole) are not counted.
func ReadRaw(ctx context.Context, d *kafka.Dialer, addr, topic string, p int, bc kafka.ReadBatchConfig) (records, bytes int64, err error) {
	conn, err := d.DialLeader(ctx, "tcp", addr, topic, p)
	if err != nil {
		return 0, 0, fmt.Errorf("dial partition %d: %w", p, err)
	}
	defer func() { _ = conn.Close() }()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return 0, 0, fmt.Errorf("read offsets of partition %d: %w", p, err)
	}
	if _, err := conn.Seek(first, kafka.SeekAbsolute); err != nil {
		return 0, 0, fmt.Errorf("seek partition %d to %d: %w", p, first, err)
	}
	buf := make([]byte, rawValueBuffer)
	for off := first; off < last; {
		if err := conn.SetReadDeadline(time.Now().Add(bc.MaxWait + 10*time.Second)); err != nil {
			return records, bytes, fmt.Errorf("set deadline: %w", err)
		}
		batch := conn.ReadBatchWith(bc)
		for {
			n, err := batch.Read(buf)
			if err != nil {
				break
			}
			if o := batch.Offset() - 1; o >= off {
				records++
				bytes += int64(n)
				off = o + 1
			}
		}
		if err := batch.Close(); err != nil && !errors.Is(err, io.EOF) {
			return records, bytes, fmt.Errorf("fetch partition %d at offset %d: %w", p, off, err)
		}
		if ctx.Err() != nil {
			return records, bytes, ctx.Err()
		}
	}
	return records, bytes, nil
}

// rawValueBuffer holds the largest value ReadRaw reads: the broker's
// default message.max.bytes.
const rawValueBuffer = 1 << 20

func (s *rawStage) close() error { return nil }

// countSink counts events; one per partition, so it needs no lock.
type countSink struct{ n int64 }

func (c *countSink) Add(*event.Event, *event.Detail) { c.n++ }
func (c *countSink) Flush()                          {}

// consumerStage is (b): ingest.Consumer and the real decoders into a
// counting sink.
type consumerStage struct {
	reg   *prometheus.Registry
	cons  *ingest.Consumer
	mu    sync.Mutex
	sinks []*countSink
}

func newConsumerStage(e *env) (stage, error) {
	s := &consumerStage{reg: prometheus.NewRegistry()}
	versions, rollouts := event.NewInterner(), event.NewInterner()
	def := config.Default()
	decOpts := decode.Options{
		MaxRecordBytes: def.Kafka.MaxRecordBytes, MaxSkew: time.Duration(def.Kafka.MaxSkew),
		PretrainServergroupPrefix: def.Pretrain.ServergroupPrefix, PretrainDeployment: def.Pretrain.Deployment,
	}
	m := ingest.NewMetrics(s.reg)
	m.InitTopics([]string{e.cfg.Topic})
	cons, err := ingest.NewConsumer(ingest.ConsumerOptions{
		Sources: []ingest.Source{{Cluster: "bench", Brokers: e.addrs, Dialer: e.dialer,
			Topic: e.cfg.Topic, Format: decode.FormatAccessLog}},
		End: e.end(),
		NewSink: func() ingest.Sink {
			c := &countSink{}
			s.mu.Lock()
			s.sinks = append(s.sinks, c)
			s.mu.Unlock()
			return c
		},
		NewDecoder: func(f decode.Format) (*decode.Decoder, error) {
			return decode.New(f, e.wikis, versions, rollouts, decOpts)
		},
		MaxWait: e.cfg.MaxWait, MinBytes: e.cfg.MinBytes, MaxBytes: e.cfg.MaxBytes,
		MissingTopicIsError: true,
	}, e.cfg.Logger.With("component", "ingest"), m)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	s.cons = cons
	return s, nil
}

func (s *consumerStage) run(ctx context.Context) error { return s.cons.Run(ctx) }

func (s *consumerStage) result(r *Result) error {
	for _, c := range s.sinks {
		r.Events += c.n
	}
	return ingestCounts(s.reg, r)
}

func (s *consumerStage) close() error { return nil }

// ingestCounts reads the ingest counters, which every run must balance:
// each record read is an event, a skip or a rejection.
func ingestCounts(g prometheus.Gatherer, r *Result) error {
	mfs, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gather metrics: %w", err)
	}
	r.Records = int64(sum(mfs, "detector_ingest_records_total"))
	r.Bytes = int64(sum(mfs, "detector_ingest_bytes_total"))
	r.Skipped = int64(sum(mfs, "detector_ingest_records_skipped_total"))
	r.Rejected = int64(sum(mfs, "detector_ingest_records_rejected_total"))
	if r.Events+r.Skipped+r.Rejected != r.Records {
		return fmt.Errorf("%d events + %d skipped + %d rejected != %d records read", r.Events, r.Skipped, r.Rejected, r.Records)
	}
	return nil
}

// sum adds every sample of a counter family, or a histogram's counts.
func sum(mfs []*dto.MetricFamily, name string) float64 {
	var s float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				s += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				s += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return s
}

func histogramSum(mfs []*dto.MetricFamily, name string) float64 {
	var s float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				s += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return s
}

// pipelineStage is (c): the detector's own pipeline over the topic, with
// the production configuration but for the brokers and topics.
type pipelineStage struct {
	reg *prometheus.Registry
	p   *pipeline.Pipeline
}

func newPipelineStage(e *env) (stage, error) {
	cfg := config.Default()
	cfg.Kafka.Clusters = []config.Cluster{{Name: "bench", Brokers: e.addrs,
		Topics: []config.Topic{{Name: e.cfg.Topic, Format: string(decode.FormatAccessLog)}}}}
	cfg.Kafka.MaxWait = model.Duration(e.cfg.MaxWait)
	cfg.Kafka.MinBytes, cfg.Kafka.MaxBytes = e.cfg.MinBytes, e.cfg.MaxBytes
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pipeline config: %w", err)
	}
	s := &pipelineStage{reg: prometheus.NewRegistry()}
	p, err := pipeline.New(pipeline.Options{
		Config: cfg, Wikis: e.wikis, Registry: s.reg, Logger: e.cfg.Logger, ClientID: "ingestbench",
		// Start before the first record so every partition reads all of it.
		Start: e.from.Add(-time.Minute), End: e.end(),
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	s.p = p
	return s, nil
}

func (s *pipelineStage) run(ctx context.Context) error { return s.p.Run(ctx) }

func (s *pipelineStage) result(r *Result) error {
	st := s.p.Store.Stats()
	r.Windowed = st.AddedRequests + st.AddedErrors
	// Every event reached the window, or was counted as dropped there.
	r.Events = r.Windowed + st.DroppedTooOld + st.DroppedTooNew + st.DroppedInvalid
	mfs, err := s.reg.Gather()
	if err != nil {
		return fmt.Errorf("gather metrics: %w", err)
	}
	r.Evaluations = int64(sum(mfs, "detector_detect_evaluation_duration_seconds"))
	r.EvalTime = time.Duration(histogramSum(mfs, "detector_detect_evaluation_duration_seconds") * float64(time.Second))
	return ingestCounts(s.reg, r)
}

func (s *pipelineStage) close() error { return s.p.Close() }
