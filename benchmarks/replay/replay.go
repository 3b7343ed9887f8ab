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
	Rounds     int // raw and replay runs over the same records; default 3
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
	rep := &Report{Config: cfg, GOMAXPROCS: runtime.GOMAXPROCS(0), BrokerSeparate: separate}
	start := time.Now()
	if err := load(ctx, cfg, wikis, broker.Addrs(), rep); err != nil {
		return nil, err
	}
	rep.Load = time.Since(start)
	cfg.Logger.Info("Records loaded", "records", rep.Records, "bytes", rep.Bytes, "duration", rep.Load)
	if _, err := raw(ctx, broker.Addrs()[0], cfg.Partitions); err != nil {
		return nil, fmt.Errorf("warm-up read: %w", err)
	}
	for i := 1; i <= cfg.Rounds; i++ {
		var rd Round
		runtime.GC()
		if rd.Raw, err = raw(ctx, broker.Addrs()[0], cfg.Partitions); err != nil {
			return nil, fmt.Errorf("round %d, raw: %w", i, err)
		}
		runtime.GC()
		if rd.Replay, err = runReplay(ctx, broker.Addrs(), wikis, rep, profilePath(cfg.CPUProfile, i)); err != nil {
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
	l, err := ingestbench.LoadAccessLogs(ctx, addrs, topic, cfg.Records, cfg.Rate, cfg.Seed, wikis)
	if err != nil {
		return err
	}
	rep.Records, rep.Bytes, rep.From, rep.To = l.Records, rep.Bytes+l.Bytes, l.From, l.To
	return nil
}

// raw reads every partition from its first to its last offset in parallel
// with kafka-go's Conn.ReadBatch, counting records and bytes.
func raw(ctx context.Context, addr string, partitions int) (Result, error) {
	def := config.Default().Kafka
	bc := kafka.ReadBatchConfig{MinBytes: def.MinBytes, MaxBytes: def.MaxBytes, MaxWait: time.Duration(def.MaxWait)}
	d := ingest.NewDialer("replaybench", nil, nil) // the replay's own dialer
	var records, bytes atomic.Int64
	errs := make([]error, partitions)
	m0 := mallocs()
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
	return Result{Records: records.Load(), Bytes: bytes.Load(), Wall: wall, Mallocs: mallocs() - m0}, errors.Join(errs...)
}

// replay runs replay.Replay over every loaded record: from the first to
// the last (its warm-up starts a window length earlier, before any record).
func runReplay(ctx context.Context, addrs []string, wikis *wikimap.Map, rep *Report, profile string) (Result, error) {
	cfg := config.Default()
	cfg.OverrideBrokers(addrs)
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
	start := time.Now()
	res, err := r.Run(ctx)
	wall := time.Since(start)
	if err != nil {
		return Result{}, err
	}
	return Result{Records: res.Records, Events: res.Events, Wall: wall, Mallocs: mallocs() - m0}, nil
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
	fmt.Fprintf(w, "replay benchmark: %d access-log records (%.0f MiB, %s of traffic at %.0f requests/s), %d partitions, GOMAXPROCS %d, kfake %s; loaded in %s\n\n",
		r.Records, float64(r.Bytes)/(1<<20), span, r.Config.Rate, r.Config.Partitions, r.GOMAXPROCS, where, r.Load.Round(100*time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\traw records/s\traw µs/record\treplay records/s\treplay events/s\treplay µs/record\treplay allocs/record\treplay/raw\t")
	for i, rd := range r.Rounds {
		fmt.Fprintf(tw, "%d\t%.0f\t%.2f\t%.0f\t%.0f\t%.2f\t%.4f\t%.2f\t\n", i+1, rd.Raw.PerSecond(), micros(rd.Raw), rd.Replay.PerSecond(),
			float64(rd.Replay.Events)/rd.Replay.Wall.Seconds(), micros(rd.Replay), rd.Replay.AllocsPerRecord(), rd.Ratio())
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
	return nil
}

func profilePath(prefix string, round int) string {
	if prefix == "" {
		return ""
	}
	return fmt.Sprintf("%s-%d.pprof", prefix, round)
}

func micros(r Result) float64 { return r.Wall.Seconds() * 1e6 / float64(r.Records) }

func meets(ok bool) string {
	if ok {
		return "meets"
	}
	return "misses"
}
