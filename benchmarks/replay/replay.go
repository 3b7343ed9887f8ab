// Package replaybench is the replay benchmark of issue 7: it loads
// realistic httpd access-log records (the simulator's, in the real wire
// format, at the production rate of about 20k requests/s so that every
// 10-s bucket holds what it holds in production) into kfake once, then in
// each round times, over the same records,
//
//	(a) raw: kafka-go at its best over all partitions in parallel
//	    (Conn.ReadBatch with 16-MiB fetches, Batch.Read into one reused
//	    buffer: no allocation per record), counting records and bytes and
//	    nothing else: the honest ceiling set by the client library and the
//	    broker (ingestbench.ReadRaw);
//	(b) replay: replay.Replay, the deterministic replay of `detector
//	    replay` (decoders, merge by event time, window, detector), from the
//	    first record to the last.
//
// It prints records/s of both, their ratio (so that machine noise cancels,
// docs/design.md section 8) and the replay's heap allocations per record,
// checks them against the bars (ratio ≥ MinRatio, ≥ MinRate records/s),
// and extrapolates from the replay's rate how long one simulated day of
// Wikimedia-scale access logs would take. An untimed raw read comes first:
// the broker's first read of freshly loaded data is slower than later ones.
// The broker is best run in its own process (the command's default), so
// that its CPU and allocations are not the client's. Run it with
//
//	go run ./benchmarks/replay/cmd/replaybench [--rounds=3] [--records=3000000]
package replaybench

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
	"text/tabwriter"
	"time"

	"github.com/montanaflynn/stats"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	ingestbench "github.com/wikimedia/pretrain-detector/benchmarks/ingest"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/replay"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Config says what to benchmark. Zero values take the defaults.
type Config struct {
	Records    int     // access-log records to load; default 3,000,000
	Partitions int     // of the topic; default 4
	Rate       float64 // simulated train fleet's requests/s; default 20,000 (production)
	Seed       int64
	// Compression of the loaded record batches. Default none.
	Compression compress.Compression
	Rounds      int // raw and replay runs over the same records; default 3
	// Broker holds the records. Nil starts kfake in this process.
	Broker ingestbench.Broker
	// CPUProfile, when set, is the path prefix of a CPU profile of each
	// replay run: <prefix>-<round>.pprof.
	CPUProfile string
	Logger     *slog.Logger
}

// Defaults.
const (
	DefaultRecords    = 3_000_000
	DefaultPartitions = 4
	DefaultRate       = 20_000.0
	DefaultRounds     = 3
	// ProductionRate is Wikimedia's request rate the day estimate is for.
	ProductionRate = 20_000.0
	// The bars: the replay's median records/s against the ceiling's, and
	// on its own.
	MinRatio = 0.6
	MinRate  = 1_000_000.0
)

const topic = simulate.DefaultAccessLog

func (c Config) withDefaults() (Config, error) {
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
		c.Rounds = DefaultRounds
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Records < 1:
		return c, fmt.Errorf("records: %d, want at least 1", c.Records)
	case c.Partitions < 1 || c.Partitions > 1024:
		return c, fmt.Errorf("partitions: %d is outside 1-1024", c.Partitions)
	case c.Rate <= 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return c, fmt.Errorf("rate: %v is not a finite number > 0", c.Rate)
	case c.Rounds < 1:
		return c, fmt.Errorf("rounds: %d, want at least 1", c.Rounds)
	}
	return c, nil
}

// Result is one timed run.
type Result struct {
	Records int64 // Kafka records read
	Bytes   int64 // raw only: value bytes read
	Events  int64 // replay only: events applied to the window
	Wall    time.Duration
	Mallocs uint64 // heap allocations of this process over the run
	// CPU is this process's (the client's) user and system CPU over the
	// run; BrokerCPU the broker process's when BrokerOK (it is not when
	// the broker runs in this process, whose CPU is then in CPU, or did not
	// answer). With both, the cores' budget shows: a run cannot be faster
	// than (CPU+BrokerCPU)/cores.
	CPU, BrokerCPU time.Duration
	BrokerOK       bool
}

// AllocsPerRecord is heap allocations per record read.
func (r Result) AllocsPerRecord() float64 { return float64(r.Mallocs) / float64(r.Records) }

// PerSecond is records read per wall second.
func (r Result) PerSecond() float64 { return float64(r.Records) / r.Wall.Seconds() }

// Round is one raw run and one replay run.
type Round struct{ Raw, Replay Result }

// Ratio is the replay's records/s over raw consumption's.
func (r Round) Ratio() float64 { return r.Replay.PerSecond() / r.Raw.PerSecond() }

// Report is what Run measured.
type Report struct {
	Config         Config
	Records        int64 // loaded
	Bytes          int64 // key and value bytes loaded
	From, To       time.Time
	Load           time.Duration
	GOMAXPROCS     int
	NumCPU         int // the machine's cores, which the client and the broker share
	BrokerSeparate bool
	Rounds         []Round
}

// Ratio is the median over rounds of Round.Ratio.
func (r *Report) Ratio() float64 {
	rs := make([]float64, len(r.Rounds))
	for i, rd := range r.Rounds {
		rs[i] = rd.Ratio()
	}
	return median(rs)
}

// ReplayRate is the median replay records/s.
func (r *Report) ReplayRate() float64 {
	rs := make([]float64, len(r.Rounds))
	for i, rd := range r.Rounds {
		rs[i] = rd.Replay.PerSecond()
	}
	return median(rs)
}

// DayRecords is how many access-log records one day at ProductionRate
// holds: one per request (ProductionRate is the daily mean; the loaded
// records, from the scenario's noon start, are a little denser).
func (r *Report) DayRecords() float64 { return ProductionRate * 86400 }

// Day is the time to replay DayRecords at the median replay rate.
func (r *Report) Day() time.Duration {
	return time.Duration(r.DayRecords() / r.ReplayRate() * float64(time.Second))
}

// median is NaN for no rounds.
func median(xs []float64) float64 {
	m, err := stats.Median(xs)
	if err != nil {
		return math.NaN()
	}
	return m
}

// Run loads the records and times the runs.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("replay benchmark config: %w", err)
	}
	wikis, err := wikimap.Default()
	if err != nil {
		return nil, fmt.Errorf("wiki map: %w", err)
	}
	broker := cfg.Broker
	if broker == nil {
		ip, err := ingestbench.StartInProcess(topic, cfg.Partitions)
		if err != nil {
			return nil, err
		}
		defer func() { _ = ip.Close() }()
		broker = ip
	}
	_, separate := broker.CPU()
	rep := &Report{Config: cfg, GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), BrokerSeparate: separate}
	start := time.Now()
	if err := load(ctx, cfg, wikis, broker.Addrs(), rep); err != nil {
		return nil, err
	}
	rep.Load = time.Since(start)
	cfg.Logger.Info("Records loaded", "records", rep.Records, "bytes", rep.Bytes, "duration", rep.Load)
	if _, err := raw(ctx, broker, cfg.Partitions); err != nil {
		return nil, fmt.Errorf("warm-up read: %w", err)
	}
	for i := 1; i <= cfg.Rounds; i++ {
		var rd Round
		runtime.GC()
		if rd.Raw, err = raw(ctx, broker, cfg.Partitions); err != nil {
			return nil, fmt.Errorf("round %d, raw: %w", i, err)
		}
		runtime.GC()
		if rd.Replay, err = runReplay(ctx, broker, wikis, rep, profilePath(cfg.CPUProfile, i)); err != nil {
			return nil, fmt.Errorf("round %d, replay: %w", i, err)
		}
		for name, r := range map[string]Result{"raw": rd.Raw, "replay": rd.Replay} {
			if r.Records != rep.Records {
				return nil, fmt.Errorf("round %d, %s: read %d records, %d were loaded", i, name, r.Records, rep.Records)
			}
		}
		cfg.Logger.Info("Round done", "round", i, "raw_records_per_second", int64(rd.Raw.PerSecond()),
			"replay_records_per_second", int64(rd.Replay.PerSecond()), "ratio", fmt.Sprintf("%.2f", rd.Ratio()))
		rep.Rounds = append(rep.Rounds, rd)
	}
	return rep, nil
}

// load writes cfg.Records access-log records of the "quiet" scenario,
// keyed by request id and timestamped with their event time.
func load(ctx context.Context, cfg Config, wikis *wikimap.Map, addrs []string, rep *Report) error {
	l, err := ingestbench.LoadAccessLogs(ctx, ingestbench.LoadOptions{Addrs: addrs, Topic: topic, Records: cfg.Records,
		Rate: cfg.Rate, Seed: cfg.Seed, Wikis: wikis, Compression: cfg.Compression})
	if err != nil {
		return err
	}
	rep.Records, rep.Bytes, rep.From, rep.To = l.Records, rep.Bytes+l.Bytes, l.From, l.To
	return nil
}

// raw reads every partition from its first to its last offset in parallel
// with kafka-go's Conn.ReadBatch, counting records and bytes.
func raw(ctx context.Context, broker ingestbench.Broker, partitions int) (Result, error) {
	addr := broker.Addrs()[0]
	def := config.Default().Kafka
	bc := kafka.ReadBatchConfig{MinBytes: def.MinBytes, MaxBytes: def.MaxBytes, MaxWait: time.Duration(def.MaxWait)}
	d := ingest.NewDialer("replaybench", nil, nil) // the replay's own dialer
	var records, bytes atomic.Int64
	errs := make([]error, partitions)
	m0 := mallocs()
	mark := ingestbench.MarkCPU(broker)
	start := time.Now()
	var wg sync.WaitGroup
	for p := range partitions {
		wg.Go(func() {
			n, b, err := ingestbench.ReadRaw(ctx, d, addr, topic, p, bc)
			records.Add(n)
			bytes.Add(b)
			errs[p] = err
		})
	}
	wg.Wait()
	wall := time.Since(start)
	r := Result{Records: records.Load(), Bytes: bytes.Load(), Wall: wall}
	r.CPU, r.BrokerCPU, r.BrokerOK = mark.Since(broker)
	r.Mallocs = mallocs() - m0
	return r, errors.Join(errs...)
}

// replay runs replay.Replay over every loaded record: from the first to
// the last (its warm-up starts a window length earlier, before any record).
func runReplay(ctx context.Context, broker ingestbench.Broker, wikis *wikimap.Map, rep *Report, profile string) (Result, error) {
	cfg := config.Default()
	cfg.OverrideBrokers(broker.Addrs())
	cfg.Kafka.Clusters[0].Topics = []config.Topic{{Name: topic, Format: "httpd-accesslog"}}
	r, err := replay.New(replay.Options{
		Config: cfg, Wikis: wikis, From: rep.From, To: rep.To, Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = r.Close() }()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return Result{}, fmt.Errorf("cpu profile: %w", err)
		}
		defer func() { _ = f.Close() }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return Result{}, fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	m0 := mallocs()
	mark := ingestbench.MarkCPU(broker)
	start := time.Now()
	res, err := r.Run(ctx)
	wall := time.Since(start)
	if err != nil {
		return Result{}, err
	}
	out := Result{Records: res.Records, Events: res.Events, Wall: wall}
	out.CPU, out.BrokerCPU, out.BrokerOK = mark.Since(broker)
	out.Mallocs = mallocs() - m0
	return out, nil
}

// mallocs is the process's heap allocations so far. ReadMemStats stops
// the world, so it is read only at the ends of a run.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// Write prints the report.
func (r *Report) Write(w io.Writer) error {
	where := "in this process (its CPU competes with the client's)"
	if r.BrokerSeparate {
		where = "in its own process"
	}
	span := r.To.Sub(r.From).Round(time.Second)
	fmt.Fprintf(w, "replay benchmark: %d access-log records (%.0f MiB uncompressed, %s of traffic at %.0f requests/s), %d partitions, batches compressed: %s, GOMAXPROCS %d, kfake %s; loaded in %s\n\n",
		r.Records, float64(r.Bytes)/(1<<20), span, r.Config.Rate, r.Config.Partitions, simulate.CompressionName(r.Config.Compression), r.GOMAXPROCS, where, r.Load.Round(100*time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\traw records/s\traw µs/record\traw CPU µs/record client+broker\treplay records/s\treplay events/s\treplay µs/record\treplay CPU µs/record client+broker\treplay allocs/record\treplay/raw\t")
	for i, rd := range r.Rounds {
		fmt.Fprintf(tw, "%d\t%.0f\t%.2f\t%s\t%.0f\t%.0f\t%.2f\t%s\t%.4f\t%.2f\t\n", i+1, rd.Raw.PerSecond(), micros(rd.Raw, rd.Raw.Wall), cpuSplit(rd.Raw),
			rd.Replay.PerSecond(), float64(rd.Replay.Events)/rd.Replay.Wall.Seconds(), micros(rd.Replay, rd.Replay.Wall), cpuSplit(rd.Replay),
			rd.Replay.AllocsPerRecord(), rd.Ratio())
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	_, err := fmt.Fprintf(w, "\nmedian replay/raw: %.2f (%s the bar of %.1f)\nmedian replay records/s: %.0f (%s the bar of %.0f)\none simulated day at %.0f requests/s (%.2f G records) replays in %s at the median rate\n",
		r.Ratio(), meets(r.Ratio() >= MinRatio), MinRatio, r.ReplayRate(), meets(r.ReplayRate() >= MinRate), MinRate,
		ProductionRate, r.DayRecords()/1e9, r.Day().Round(time.Minute))
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	// The budget: both processes share the machine's cores, so no run can
	// go faster than the cores divided by the CPU it spends per record.
	// Only rounds where the broker's CPU was read count.
	var raw, rep []float64
	for _, rd := range r.Rounds {
		if rd.Raw.BrokerOK && rd.Replay.BrokerOK {
			raw = append(raw, micros(rd.Raw, rd.Raw.CPU+rd.Raw.BrokerCPU))
			rep = append(rep, micros(rd.Replay, rd.Replay.CPU+rd.Replay.BrokerCPU))
		}
	}
	if len(raw) > 0 {
		_, err = fmt.Fprintf(w, "CPU per record, client and broker together (median of %d rounds): raw %.2f µs, replay %.2f µs; at %.0f records/s, %d cores allow %.2f µs per record\n",
			len(raw), median(raw), median(rep), MinRate, r.NumCPU, float64(r.NumCPU)*1e6/MinRate)
		if err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	return nil
}

func profilePath(prefix string, round int) string {
	if prefix == "" {
		return ""
	}
	return fmt.Sprintf("%s-%d.pprof", prefix, round)
}

// micros is d per record of r, in µs.
func micros(r Result, d time.Duration) float64 { return d.Seconds() * 1e6 / float64(r.Records) }

// cpuSplit is r's client and broker CPU per record; "-" for a broker whose
// CPU was not read (in this process, its CPU is in the client's).
func cpuSplit(r Result) string {
	broker := "-"
	if r.BrokerOK {
		broker = fmt.Sprintf("%.2f", micros(r, r.BrokerCPU))
	}
	return fmt.Sprintf("%.2f+%s", micros(r, r.CPU), broker)
}

func meets(ok bool) string {
	if ok {
		return "meets"
	}
	return "misses"
}
