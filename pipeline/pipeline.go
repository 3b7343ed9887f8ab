// Package pipeline runs the detector live: Kafka → ingest → window →
// detect, following the topics from now − window length, with the warm-up,
// the watermark over partitions and the evaluation loop, for the daemon, the
// demo and the benchmarks. The stages themselves are built by
// internal/stages, as for replay; each stage's state lives in its package.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/internal/stages"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// Options configures a Pipeline.
type Options struct {
	Config config.Config
	Wikis  *wikimap.Map
	// Start is where every partition begins (by Kafka timestamp); zero
	// means now − window length.
	Start time.Time
	// End makes the pipeline run to completion (replay); zero follows forever.
	End time.Time
	// Sink gets the findings after each evaluation (every EvalInterval
	// once warmed up, and the last one at the end), from the evaluation
	// goroutine alone: a notifier fed from here has one caller, so a
	// resend can never overtake a resolution. Its errors are logged.
	Sink         alert.Sink
	EvalInterval time.Duration // how often the watermark is checked; default 200ms
	ClientID     string
	Registry     prometheus.Registerer
	Logger       *slog.Logger
}

// Pipeline is one running detector.
type Pipeline struct {
	opts     Options
	st       *stages.Stages // what Store, Detector, Versions and Rollouts belong to
	Store    *window.Store
	Detector *detect.Detector
	Consumer *ingest.Consumer
	Versions *event.Interner
	Rollouts *event.Interner
	logger   *slog.Logger
	evalDur  prometheus.Histogram
	active   *prometheus.GaugeVec
	fleet    prometheus.Gauge

	mu         sync.Mutex // guards the snapshots below, read by HTTP handlers
	findings   []detect.Finding
	cohort     detect.CohortStatus
	fleetOn    bool
	fleetSince time.Time
	assessed   ingest.Assessment
	evaluated  time.Time // wall time of the last evaluation by the loop; zero when it does not run
	evalWM     int64     // watermark of the last evaluation

	// notes are the notes added to findings evaluated while a request
	// topic's partition was set aside, by finding ID; evaluation goroutine
	// only, copied into the snapshots.
	notes map[string]string
}

// New builds every stage from the configuration. Errors name the field.
func New(opts Options) (_ *Pipeline, err error) {
	cfg := opts.Config
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.EvalInterval <= 0 {
		opts.EvalInterval = 200 * time.Millisecond
	}
	if opts.ClientID == "" {
		opts.ClientID = "pretrain-detector"
	}
	st, err := stages.New(cfg, opts.Wikis, 0, opts.Registry)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = st.Close()
		}
	}()
	p := &Pipeline{opts: opts, st: st, Store: st.Store, Detector: st.Detector, Versions: st.Versions, Rollouts: st.Rollouts,
		logger: opts.Logger, notes: map[string]string{}}

	sources, err := stages.KafkaSources(cfg, opts.ClientID)
	if err != nil {
		return nil, err
	}
	start := opts.Start
	var maxAhead time.Duration
	if start.IsZero() {
		start = time.Now().Add(-time.Duration(cfg.Window.Length))
		if opts.End.IsZero() {
			// Live from now (the daemon): no event may be further ahead of
			// the wall clock than the allowed lateness, so the watermark
			// never passes the present (ingest.ConsumerOptions.MaxAhead).
			// Replay and the demo run in their own time.
			maxAhead = max(time.Duration(cfg.Window.Lateness), time.Second)
		}
	}
	p.Consumer, err = ingest.NewConsumer(ingest.ConsumerOptions{
		Sources: sources, Start: start, End: opts.End,
		NewSink:    func() ingest.Sink { return st.Store.NewWriter() },
		NewDecoder: st.NewDecoder,
		MaxWait:    time.Duration(cfg.Kafka.MaxWait), MinBytes: cfg.Kafka.MinBytes, MaxBytes: cfg.Kafka.MaxBytes,
		TopicRecheck: time.Duration(cfg.Kafka.TopicRecheck), MaxAhead: maxAhead,
		MaxPartitionStall: time.Duration(cfg.Kafka.MaxPartitionStall),
	}, opts.Logger.With("component", "ingest"), stages.IngestMetrics(opts.Registry, sources))
	if err != nil {
		return nil, err
	}

	f := promauto.With(opts.Registry)
	p.evalDur = f.NewHistogram(prometheus.HistogramOpts{Namespace: "detector", Subsystem: "detect", Name: "evaluation_duration_seconds",
		Help: "Time to evaluate the buckets that closed since the last evaluation.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8)})
	p.active = f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "detector", Subsystem: "detect", Name: "findings_active",
		Help: "Findings pending or firing, by kind and state."}, []string{"kind", "state"})
	for _, k := range detect.Kinds {
		p.active.WithLabelValues(string(k), string(detect.StatePending))
		p.active.WithLabelValues(string(k), string(detect.StateFiring))
	}
	p.fleet = f.NewGauge(prometheus.GaugeOpts{Namespace: "detector", Subsystem: "detect", Name: "fleet_incident",
		Help: "1 while the train fleet's error rate jumps across DB sections at once (no one's deploy)."})
	return p, nil
}

// Run reads and evaluates until ctx is done or, with End set, until every
// partition reached the end; then it evaluates what is left and returns.
//
// While following (no End), evaluation starts once the warm-up is over:
// every partition found at start has read up to the high-water mark it saw
// first, or has been set aside (ingest.Consumer.Assess). From then on the
// watermark is the minimum of each partition's own progress, less the
// allowed lateness (and never past the window's newest event less the
// lateness), so a partition that lags holds evaluation back instead of
// having its buckets judged, once and for good, without its records; an
// idle partition does not hold it, and one unreadable or behind for longer
// than kafka.max_partition_stall is set aside.
func (p *Pipeline) Run(ctx context.Context) error {
	if _, err := p.Consumer.Discover(ctx); err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Consumer.Run(cctx) }()
	t := time.NewTicker(p.opts.EvalInterval)
	defer t.Stop()
	defer func() {
		p.mu.Lock()
		p.evaluated = time.Time{}
		p.mu.Unlock()
	}()
	lateness := time.Duration(p.opts.Config.Window.Lateness)
	for {
		select {
		case err := <-done:
			p.finish()
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		case <-t.C:
			a := p.Consumer.Assess(time.Now(), lateness)
			p.mu.Lock()
			p.assessed = a
			p.mu.Unlock()
			if p.opts.End.IsZero() && !a.WarmedUp {
				continue
			}
			wm := p.Store.Watermark()
			if p.opts.End.IsZero() {
				if a.Low > 0 {
					wm = min(wm, a.Low-int64(lateness))
				} else {
					wm = 0 // a partition that holds the watermark has read nothing yet
				}
			}
			p.evaluate(max(wm, p.evalWM), a)
			p.mu.Lock()
			p.evaluated = time.Now()
			p.mu.Unlock()
		}
	}
}

// finish evaluates everything read. In replay the last records are final,
// so the watermark moves to the newest event: nothing later will come.
// Stopping the daemon evaluates no further than the loop did: the lagging
// partitions that held it back still have not been read.
func (p *Pipeline) finish() {
	p.Store.Sync()
	if p.opts.End.IsZero() {
		p.evaluate(p.evalWM, p.assessedNow())
		return
	}
	wm := p.Store.Newest() + p.Store.BucketWidth()
	if end := p.opts.End.UnixNano(); wm > end {
		wm = end
	}
	p.evaluate(wm, ingest.Assessment{})
}

func (p *Pipeline) assessedNow() ingest.Assessment {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.assessed
}

// noteSetAside is the note on findings evaluated while a request topic's
// partition was set aside.
func noteSetAside(a ingest.Assessment) string {
	var parts []string
	for _, s := range a.SetAside {
		if s.Requests {
			parts = append(parts, fmt.Sprintf("%s/%d", s.Topic, s.Partition))
		}
	}
	return fmt.Sprintf("evaluated while request partition(s) %s were set aside (%s): request counts, and so rates, may read low",
		strings.Join(parts, ", "), "unreadable or behind for longer than kafka.max_partition_stall")
}

// withNote returns f with its set-aside note, if any, added to the evidence's note.
func (p *Pipeline) withNote(f detect.Finding) detect.Finding {
	if n, ok := p.notes[f.ID]; ok && !strings.Contains(f.Evidence.Note, n) {
		if f.Evidence.Note != "" {
			f.Evidence.Note += "; "
		}
		f.Evidence.Note += n
	}
	return f
}

func (p *Pipeline) evaluate(wm int64, a ingest.Assessment) {
	p.Store.Sync()
	start := time.Now()
	changed := p.Detector.Evaluate(wm)
	p.mu.Lock()
	p.evalWM = max(p.evalWM, wm)
	p.mu.Unlock()
	p.evalDur.Observe(time.Since(start).Seconds())
	all := p.Detector.Findings()
	if a.RequestsSetAside() {
		note := noteSetAside(a)
		for _, f := range all {
			if f.State != detect.StateResolved {
				if _, ok := p.notes[f.ID]; !ok {
					p.notes[f.ID] = note
				}
			}
		}
	}
	for i := range all {
		all[i] = p.withNote(all[i])
	}
	for i := range changed {
		changed[i] = p.withNote(changed[i])
	}
	counts := map[[2]string]float64{}
	for _, f := range all {
		if f.State != detect.StateResolved {
			counts[[2]string{string(f.Kind), string(f.State)}]++
		}
	}
	for _, k := range detect.Kinds {
		for _, s := range []detect.State{detect.StatePending, detect.StateFiring} {
			p.active.WithLabelValues(string(k), string(s)).Set(counts[[2]string{string(k), string(s)}])
		}
	}
	if on, _ := p.Detector.FleetIncident(); on {
		p.fleet.Set(1)
	} else {
		p.fleet.Set(0)
	}
	cohort := p.Detector.CohortStatus()
	fleet, since := p.Detector.FleetIncident()
	p.mu.Lock()
	p.findings = all
	p.cohort, p.fleetOn, p.fleetSince = cohort, fleet, since
	p.mu.Unlock()
	if p.opts.Sink != nil {
		if err := p.opts.Sink.Notify(changed, all); err != nil {
			p.opts.Logger.Warn("Notifying findings", "err", err)
		}
	}
}

// Findings returns a snapshot of the current findings.
func (p *Pipeline) Findings() []detect.Finding {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]detect.Finding(nil), p.findings...)
}

// CohortStatus returns the cohort test's state as of the last evaluation.
func (p *Pipeline) CohortStatus() detect.CohortStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cohort
}

// FleetIncident reports the fleet-wide incident state as of the last evaluation.
func (p *Pipeline) FleetIncident() (bool, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fleetOn, p.fleetSince
}

// readyFor is how recent the loop's last evaluation must be for Ready: many
// evaluation intervals, so a slow evaluation (the first one covers the
// whole window) does not flap it, and short enough that a wedged loop
// stops being ready.
const readyFor = 30 * time.Second

// Ready reports whether evaluation runs (see Readiness).
func (p *Pipeline) Ready() bool {
	ok, _ := p.Readiness()
	return ok
}

// Readiness reports whether evaluation runs: the warm-up is over and the
// evaluation loop has evaluated within the last readyFor (plus ten
// evaluation intervals). The reason says what is missing.
func (p *Pipeline) Readiness() (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !p.assessed.WarmedUp:
		return false, "warming the windows up from Kafka"
	case p.evaluated.IsZero():
		return false, "evaluation has not started"
	case time.Since(p.evaluated) > readyFor+10*p.opts.EvalInterval:
		return false, fmt.Sprintf("no evaluation for %s", time.Since(p.evaluated).Round(time.Second))
	}
	return true, ""
}

// Assessment returns where the partitions stood at the last evaluation
// tick: the warm-up, the watermark's input and the partitions set aside.
func (p *Pipeline) Assessment() ingest.Assessment { return p.assessedNow() }

// EvaluatedTo returns the watermark of the last evaluation, Unix ns; 0 before any.
func (p *Pipeline) EvaluatedTo() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.evalWM
}

// Close releases the window.
func (p *Pipeline) Close() error { return p.st.Close() }
