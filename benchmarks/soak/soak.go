// Package soak is the detector's soak benchmark (issue 8): it drives the
// daemon's pipeline — kafka-go partition readers, the real decoders, the
// window and the detector, evaluating as the watermark moves, exactly as
// `detector run` wires them — with realistic Wikimedia traffic at a high
// rate (default 200k request events/s) for a long time (default 10 min),
// with a cardinality storm (default a million new error fingerprints) in
// the middle, and samples every 10 s the detector's RSS, CPU, heap,
// goroutines, consumer lag and watermark delay.
//
// The broker (kfake) and the traffic (the simulator, written with franz-go)
// run in a separate load process, so that what is measured is the
// detector's alone; the load process's RSS and CPU are reported beside.
// The batches are snappy-compressed, as Wikimedia's logging producers send
// them, so the detector's reader pays for decompression as in production
// (and the in-process broker, whose request loop is single-threaded, keeps
// up with 200k/s on a 2-core machine; uncompressed it tops out near
// 175k/s). The broker keeps a few seconds of traffic (retention by bytes,
// applied every second), as a real one keeps hours: a reader that falls
// that far behind loses records, and the benchmark counts them.
//
// Run it with
//
//	go run ./benchmarks/soak/cmd/soak                # 10 min at 200k/s, 1M-fingerprint storm
//	go run ./benchmarks/soak/cmd/soak --duration=30s --rate=20000 --storm=100000
package soak

// This file is the soak run itself: configuration, the sampler and the run
// loop, in the order a run goes; the load process is in load.go. It is
// long because the run reads as one story, not because it holds several.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/pipeline"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Config says what to run. Zero values take the defaults.
type Config struct {
	// Duration of the traffic. Default 10 min.
	Duration time.Duration
	// Rate is request events per second. Default 200,000.
	Rate float64
	// StormFingerprints new error fingerprints are written evenly over
	// [StormAt, StormAt+StormFor). Defaults: 1,000,000 from Duration/5 for
	// Duration/5. Negative: no storm.
	StormFingerprints int
	StormAt, StormFor time.Duration
	// Sample is the sampling interval. Default 10 s.
	Sample time.Duration
	// AccessLogPartitions (default 8) and RetentionBytes per partition
	// (default 128 MiB) of the broker.
	AccessLogPartitions int
	RetentionBytes      int64
	// Compression of the produced batches (default snappy, as
	// Wikimedia's logging producers; the detector's reader decompresses).
	Compression string
	// Drain bounds the wait, after the traffic ends, for the detector to
	// read what was written. Default 60 s.
	Drain time.Duration
	// Load returns the command that runs RunLoad with its stdin and stdout
	// (the soak command re-executes itself; a test, its test binary).
	// Run sets Stdin and Stdout; Stderr is the caller's.
	Load func() *exec.Cmd
	// Progress, when set, receives each sample as a table row as it is taken.
	Progress io.Writer
	// Logger is the pipeline's; default discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Duration <= 0 {
		c.Duration = 10 * time.Minute
	}
	if c.Rate <= 0 {
		c.Rate = 200_000
	}
	if c.StormFingerprints == 0 {
		c.StormFingerprints = 1_000_000
	}
	if c.StormAt <= 0 {
		c.StormAt = c.Duration / 5
	}
	if c.StormFor <= 0 {
		c.StormFor = c.Duration / 5
	}
	if c.Sample <= 0 {
		c.Sample = 10 * time.Second
	}
	if c.AccessLogPartitions <= 0 {
		c.AccessLogPartitions = 8
	}
	if c.RetentionBytes <= 0 {
		c.RetentionBytes = 128 << 20
	}
	if c.Drain <= 0 {
		c.Drain = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Sample is one measurement. Rates are over the interval before it.
type Sample struct {
	At             time.Duration // since the traffic began
	EventsPerSec   float64       // records the detector read
	WrittenPerSec  float64       // records the load wrote (acknowledged)
	LagRecords     float64       // consumer lag, summed over partitions
	WatermarkDelay time.Duration // wall clock − watermark (what the daemon exports)
	RSS            int64         // detector process, bytes
	CPU            float64       // detector process, cores
	HeapInuse      uint64        // Go heap in use, bytes
	Goroutines     int
	Catalogue      int   // fingerprints catalogued
	Evictions      int64 // catalogue evictions so far
	CacheBytes     uint64
	StormWritten   int64   // storm records written so far
	LoadRSS        int64   // load process (broker and traffic)
	LoadCPU        float64 // load process, cores
}

// Report is the outcome of a run.
type Report struct {
	Duration          time.Duration
	TargetRate        float64
	FleetRate         float64 // the simulator's fleet rate that gave TargetRate
	StormFingerprints int
	Samples           []Sample
	Written, Read     int64 // records written (acknowledged) and read
	Failed            int64 // records the broker did not acknowledge
	StormWritten      int64
	Rejected          int64 // records the detector rejected as malformed
	OffsetResets      int64 // times a reader fell behind retention and skipped ahead
	DrainTook         time.Duration
	MemoryBound       int64  // the window's own bound for its configuration
	CacheMaxBytes     uint64 // window.cache_bytes
	CatalogueCap      int    // window.catalogue_entries
	GoroutinesBefore  int
	GoroutinesAfter   int
	LoadErr           string
}

// Lost is how many written records were never read.
func (r Report) Lost() int64 { return r.Written - r.Read }

// Run runs the soak and returns its report. It fails when the load process
// or the pipeline does; what it measured is for the caller to judge.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	if cfg.Load == nil {
		return Report{}, errors.New("soak: Config.Load is required")
	}
	rep := Report{Duration: cfg.Duration, TargetRate: cfg.Rate, StormFingerprints: max(cfg.StormFingerprints, 0),
		GoroutinesBefore: runtime.NumGoroutine()}

	lp, err := startLoad(cfg)
	if err != nil {
		return rep, err
	}
	defer lp.stop()
	rep.FleetRate = lp.first.FleetRate

	wikis, err := wikimap.Default()
	if err != nil {
		return rep, err
	}
	c := config.Default()
	c.OverrideBrokers([]string{lp.first.Addr})
	if err := c.Validate(); err != nil {
		return rep, err
	}
	reg := prometheus.NewRegistry()
	var resets atomic.Int64
	logger := slog.New(&countingHandler{Handler: cfg.Logger.Handler(), match: "Offset out of range", n: &resets})
	p, err := pipeline.New(pipeline.Options{Config: c, Wikis: wikis, Registry: reg, Logger: logger})
	if err != nil {
		return rep, err
	}
	st := p.Store.Stats()
	rep.MemoryBound, rep.CacheMaxBytes, rep.CatalogueCap = st.MemoryBound, st.CacheMaxBytes, c.Window.CatalogueEntries

	pctx, stopPipeline := context.WithCancel(ctx)
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(pctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopPipeline()
		err := <-pdone
		if cerr := p.Close(); err == nil {
			err = cerr
		}
		return err
	}
	defer func() { _ = stop() }()

	// The topics are empty: ready as soon as every partition answered.
	for !p.Ready() {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case err := <-pdone:
			return rep, fmt.Errorf("pipeline stopped at start: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := lp.start(); err != nil {
		return rep, err
	}
	began := time.Now()

	s := newSampler(reg, p, lp, began)
	tick := time.NewTicker(cfg.Sample)
	defer tick.Stop()
	take := func() {
		smp := s.take()
		rep.Samples = append(rep.Samples, smp)
		if cfg.Progress != nil {
			if len(rep.Samples) == 1 {
				fmt.Fprintln(cfg.Progress, TableHeader)
			}
			fmt.Fprintln(cfg.Progress, smp.Row())
		}
	}
	var final loadMsg
traffic:
	for {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case err := <-pdone:
			pdone <- err
			return rep, fmt.Errorf("pipeline stopped: %w", err)
		case <-tick.C:
			take()
		case final = <-lp.done:
			break traffic
		}
	}
	rep.LoadErr = final.Err
	for _, n := range final.Written {
		rep.Written += n
	}
	rep.StormWritten, rep.Failed = final.Storm, final.Failed

	// Drain: wait for the detector to read what was written.
	drainStart := time.Now()
	deadline := drainStart.Add(cfg.Drain)
	for time.Now().Before(deadline) && s.read() < float64(rep.Written) {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-tick.C:
			take()
		case <-time.After(50 * time.Millisecond):
		}
	}
	rep.DrainTook = time.Since(drainStart)
	if time.Since(s.last) >= time.Second { // a rate over less is noise
		take()
	}
	rep.Read = int64(s.read())
	rep.Rejected = int64(s.sum("detector_ingest_records_rejected_total"))
	rep.OffsetResets = resets.Load()

	if err := stop(); err != nil {
		return rep, fmt.Errorf("pipeline: %w", err)
	}
	lp.stop()
	// Goroutines of the pipeline and the HTTP client end asynchronously.
	for i := 0; i < 50 && runtime.NumGoroutine() > rep.GoroutinesBefore; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	rep.GoroutinesAfter = runtime.NumGoroutine()
	return rep, nil
}

// countingHandler counts log records whose message contains match.
type countingHandler struct {
	slog.Handler
	match string
	n     *atomic.Int64
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithAttrs(a), match: h.match, n: h.n}
}

func (h *countingHandler) WithGroup(g string) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithGroup(g), match: h.match, n: h.n}
}

// loadProc is the running load process.
type loadProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	first loadMsg
	done  chan loadMsg

	mu     sync.Mutex
	latest loadMsg
	once   sync.Once
}

func startLoad(cfg Config) (*loadProc, error) {
	cmd := cfg.Load()
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("load process stdin: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("load process stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the load process: %w", err)
	}
	lp := &loadProc{cmd: cmd, in: in, done: make(chan loadMsg, 1)}
	lc := LoadConfig{Rate: cfg.Rate, Duration: cfg.Duration, StormAt: cfg.StormAt, StormFor: cfg.StormFor,
		StormFingerprints: max(cfg.StormFingerprints, 0), AccessLogPartitions: cfg.AccessLogPartitions,
		RetentionBytes: cfg.RetentionBytes, Compression: cfg.Compression, Seed: 1}
	b, _ := json.Marshal(lc) // plain types: cannot fail
	if _, err := in.Write(append(b, '\n')); err != nil {
		lp.stop()
		return nil, fmt.Errorf("configure the load process: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		lp.stop()
		return nil, fmt.Errorf("load process: no address (%v)", sc.Err())
	}
	if err := json.Unmarshal(sc.Bytes(), &lp.first); err != nil || lp.first.Addr == "" {
		lp.stop()
		return nil, fmt.Errorf("load process said %q: %v", sc.Bytes(), err)
	}
	go func() {
		for sc.Scan() {
			var m loadMsg
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			lp.mu.Lock()
			lp.latest = m
			lp.mu.Unlock()
			if m.Done {
				lp.done <- m
			}
		}
	}()
	return lp, nil
}

func (lp *loadProc) start() error {
	if _, err := io.WriteString(lp.in, "go\n"); err != nil {
		return fmt.Errorf("start the traffic: %w", err)
	}
	return nil
}

func (lp *loadProc) progress() loadMsg {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.latest
}

func (lp *loadProc) pid() int { return lp.cmd.Process.Pid }

// stop closes the load process's stdin, which ends it, and waits; it kills
// it if it does not end within 10 s. Idempotent.
func (lp *loadProc) stop() {
	lp.once.Do(func() {
		_ = lp.in.Close()
		done := make(chan struct{})
		go func() {
			_ = lp.cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = lp.cmd.Process.Kill()
			<-done
		}
	})
}

// sampler takes Samples.
type sampler struct {
	reg   *prometheus.Registry
	p     *pipeline.Pipeline
	lp    *loadProc
	began time.Time

	last                  time.Time
	lastRead, lastWritten float64
	lastCPU, lastLoadCPU  float64
	heap                  []metrics.Sample
	fams                  map[string]*dto.MetricFamily
}

func newSampler(reg *prometheus.Registry, p *pipeline.Pipeline, lp *loadProc, began time.Time) *sampler {
	s := &sampler{reg: reg, p: p, lp: lp, began: began, last: began,
		heap: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}}
	s.lastCPU, _ = selfCPU()
	s.lastLoadCPU, _, _ = procStat(lp.pid())
	return s
}

func (s *sampler) gather() {
	fams, err := s.reg.Gather()
	if err != nil {
		return
	}
	s.fams = make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		s.fams[f.GetName()] = f
	}
}

func (s *sampler) sum(name string) float64 {
	f := s.fams[name]
	if f == nil {
		return 0
	}
	v := 0.0
	for _, m := range f.GetMetric() {
		v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return v
}

func (s *sampler) read() float64 {
	s.gather()
	return s.sum("detector_ingest_records_total")
}

func (s *sampler) take() Sample {
	now := time.Now()
	dt := now.Sub(s.last).Seconds()
	s.last = now
	s.gather()
	read := s.sum("detector_ingest_records_total")
	prog := s.lp.progress()
	var written float64
	for _, n := range prog.Written {
		written += float64(n)
	}
	cpu, rss := selfCPU()
	loadCPU, loadRSS, _ := procStat(s.lp.pid())
	metrics.Read(s.heap)
	st := s.p.Store.Stats()
	smp := Sample{
		At:            now.Sub(s.began),
		EventsPerSec:  (read - s.lastRead) / dt,
		WrittenPerSec: (written - s.lastWritten) / dt,
		LagRecords:    s.sum("detector_ingest_consumer_lag_records"),
		RSS:           rss,
		CPU:           (cpu - s.lastCPU) / dt,
		HeapInuse:     s.heap[0].Value.Uint64(),
		Goroutines:    runtime.NumGoroutine(),
		Catalogue:     st.CatalogueEntries,
		Evictions:     st.CatalogueEvictions,
		CacheBytes:    st.CacheBytes,
		StormWritten:  prog.Storm,
		LoadRSS:       loadRSS,
		LoadCPU:       (loadCPU - s.lastLoadCPU) / dt,
	}
	if wm := s.p.Store.Watermark(); wm > 0 {
		smp.WatermarkDelay = now.Sub(time.Unix(0, wm))
	}
	s.lastRead, s.lastWritten, s.lastCPU, s.lastLoadCPU = read, written, cpu, loadCPU
	return smp
}

// TableHeader heads the sample rows.
const TableHeader = "    t  events/s  written/s       lag  wm delay  RSS MiB  CPU  heap MiB  gorout  catalogue  evictions  storm     load RSS  load CPU"

// Row formats a sample under TableHeader.
func (s Sample) Row() string {
	return fmt.Sprintf("%5.0fs %9.0f %10.0f %9.0f %8.1fs %8.1f %4.2f %9.1f %7d %10d %10d %6d %9.1fMi %9.2f",
		s.At.Seconds(), s.EventsPerSec, s.WrittenPerSec, s.LagRecords, s.WatermarkDelay.Seconds(),
		mib(s.RSS), s.CPU, mib(int64(s.HeapInuse)), s.Goroutines, s.Catalogue, s.Evictions, s.StormWritten, mib(s.LoadRSS), s.LoadCPU)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// Summary is what a run shows at a glance, computed from its samples.
type Summary struct {
	// WrittenPerSec is the request events written per second over the
	// run, the storm excluded: the rate achieved against the target.
	WrittenPerSec     float64
	MeanEventsPerSec  float64       // read, storm included, over the samples taken while traffic ran
	MaxRSS            int64         // detector
	RSSGrowthLastHalf int64         // RSS at the end − RSS at half time, bytes
	MaxWatermarkDelay time.Duration // worst sample
	MaxLagRecords     float64
	MeanCPU           float64 // detector, cores
	MeanLoadCPU       float64 // load process, cores
}

// Summary computes the summary over the samples taken while traffic ran.
func (r Report) Summary() Summary {
	var s Summary
	if r.Duration > 0 {
		s.WrittenPerSec = float64(r.Written-r.StormWritten) / r.Duration.Seconds()
	}
	var traffic []Sample
	for _, smp := range r.Samples {
		if smp.At <= r.Duration+time.Second {
			traffic = append(traffic, smp)
		}
		s.MaxRSS = max(s.MaxRSS, smp.RSS)
		s.MaxWatermarkDelay = max(s.MaxWatermarkDelay, smp.WatermarkDelay)
		s.MaxLagRecords = max(s.MaxLagRecords, smp.LagRecords)
	}
	for _, smp := range traffic {
		s.MeanEventsPerSec += smp.EventsPerSec / float64(len(traffic))
		s.MeanCPU += smp.CPU / float64(len(traffic))
		s.MeanLoadCPU += smp.LoadCPU / float64(len(traffic))
	}
	if n := len(r.Samples); n >= 2 {
		s.RSSGrowthLastHalf = r.Samples[n-1].RSS - r.Samples[n/2].RSS
	}
	return s
}

// Print writes the samples and the summary.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "soak: %s of traffic at a target of %.0f request events/s (simulator fleet rate %.0f), storm of %d new fingerprints; %d CPUs (GOMAXPROCS %d)\n",
		r.Duration, r.TargetRate, r.FleetRate, r.StormFingerprints, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintln(w, TableHeader)
	for _, s := range r.Samples {
		fmt.Fprintln(w, s.Row())
	}
	sum := r.Summary()
	fmt.Fprintf(w, "records: %d written, %d read, %d lost, %d not acknowledged by the broker, %d rejected as malformed; storm records %d; readers reset past retention %d times; drained in %s\n",
		r.Written, r.Read, r.Lost(), r.Failed, r.Rejected, r.StormWritten, r.OffsetResets, r.DrainTook.Round(100*time.Millisecond))
	fmt.Fprintf(w, "rate: %.0f request events/s written (target %.0f), %.0f records/s read on average while traffic ran, storm included; detector CPU %.2f cores, load process %.2f cores\n",
		sum.WrittenPerSec, r.TargetRate, sum.MeanEventsPerSec, sum.MeanCPU, sum.MeanLoadCPU)
	fmt.Fprintf(w, "memory: detector RSS max %.1f MiB, growth over the second half %+.1f MiB; the window's bound %.1f MiB (cache cap %.0f MiB, catalogue cap %d entries)\n",
		mib(sum.MaxRSS), mib(sum.RSSGrowthLastHalf), mib(r.MemoryBound), mib(int64(r.CacheMaxBytes)), r.CatalogueCap)
	fmt.Fprintf(w, "lag: max %.0f records behind the high-water marks; max watermark delay %s (allowed lateness 30 s, plus however far the load process fell behind real time)\n",
		sum.MaxLagRecords, sum.MaxWatermarkDelay.Round(100*time.Millisecond))
	fmt.Fprintf(w, "goroutines: %d before, %d after\n", r.GoroutinesBefore, r.GoroutinesAfter)
	if r.LoadErr != "" {
		fmt.Fprintf(w, "load process error: %s\n", r.LoadErr)
	}
}
