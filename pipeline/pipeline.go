// Package pipeline wires the stages of DESIGN.md together, Kafka → ingest →
// window → detect, for the daemon, replay, the demo and the benchmarks. It
// owns no logic of its own: each stage's state lives in its package.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/segmentio/kafka-go"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/ingest"
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
	// OnChange receives findings whose state changed, from the evaluation
	// goroutine, in order.
	OnChange     func([]detect.Finding)
	EvalInterval time.Duration // how often the watermark is checked; default 200ms
	ClientID     string
	Registry     prometheus.Registerer
	Logger       *slog.Logger
}

// Pipeline is one running detector.
type Pipeline struct {
	opts     Options
	Store    *window.Store
	Detector *detect.Detector
	Consumer *ingest.Consumer
	Versions *ingest.Interner
	Rollouts *ingest.Interner
	logger   *slog.Logger
	evalDur  prometheus.Histogram
	active   *prometheus.GaugeVec
	fleet    prometheus.Gauge

	mu         sync.Mutex // guards the snapshots below, read by HTTP handlers
	findings   []detect.Finding
	cohort     detect.CohortStatus
	fleetOn    bool
	fleetSince time.Time
}

// New builds every stage from the configuration. Errors name the field.
func New(opts Options) (*Pipeline, error) {
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
	p := &Pipeline{opts: opts, Versions: ingest.NewInterner(), Rollouts: ingest.NewInterner(), logger: opts.Logger}

	store, err := window.New(windowConfig(cfg), opts.Wikis, p.Versions, p.Rollouts, opts.Registry)
	if err != nil {
		return nil, fmt.Errorf("window: %w", err)
	}
	p.Store = store
	for _, m := range cfg.Deploys {
		store.AddDeploy(markerDeploy(m))
	}

	if p.Detector, err = detect.New(detectConfig(cfg), opts.Wikis, store); err != nil {
		return nil, err
	}

	cls, err := classifier(cfg.Classifier)
	if err != nil {
		return nil, err
	}
	decOpts := decoderOptions(cfg, cls)
	sources, err := kafkaSources(cfg, opts.ClientID)
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
	im := ingest.NewMetrics(opts.Registry)
	topics := make([]string, 0, len(sources))
	for _, s := range sources {
		topics = append(topics, s.Topic)
	}
	im.InitTopics(topics)
	p.Consumer, err = ingest.NewConsumer(ingest.ConsumerOptions{
		Sources: sources, Start: start, End: opts.End,
		NewSink: func() ingest.Sink { return store.NewWriter() },
		NewDecoder: func(f ingest.Format) (*ingest.Decoder, error) {
			return ingest.NewDecoder(f, opts.Wikis, p.Versions, p.Rollouts, decOpts)
		},
		MaxWait: time.Duration(cfg.Kafka.MaxWait), MinBytes: cfg.Kafka.MinBytes, MaxBytes: cfg.Kafka.MaxBytes,
		TopicRecheck: time.Duration(cfg.Kafka.TopicRecheck), MaxAhead: maxAhead,
	}, opts.Logger.With("component", "ingest"), im)
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

func windowConfig(cfg config.Config) window.Config {
	return window.Config{
		Bucket:           time.Duration(cfg.Window.Bucket),
		Length:           time.Duration(cfg.Window.Length),
		Lateness:         time.Duration(cfg.Window.Lateness),
		CacheBytes:       cfg.Window.CacheBytes,
		CatalogueEntries: cfg.Window.CatalogueEntries,
		CatalogueBytes:   cfg.Window.CatalogueBytes,
	}
}

// kafkaSources lists every configured topic with its cluster's dialer.
func kafkaSources(cfg config.Config, clientID string) ([]ingest.Source, error) {
	var sources []ingest.Source
	for _, ct := range cfg.Topics() {
		dialer, err := dialer(clientID, ct.Cluster)
		if err != nil {
			return nil, fmt.Errorf("kafka cluster %s: %w", ct.Cluster.Name, err)
		}
		format, err := ingest.ParseFormat(ct.Topic.Format)
		if err != nil {
			return nil, fmt.Errorf("topic %s: %w", ct.Topic.Name, err)
		}
		sources = append(sources, ingest.Source{Cluster: ct.Cluster.Name, Brokers: ct.Cluster.Brokers, Dialer: dialer, Topic: ct.Topic.Name, Format: format})
	}
	return sources, nil
}

func detectConfig(cfg config.Config) detect.Config {
	return detect.Config{
		Cohort: cfg.Pretrain.Cohort, SharedWith: cfg.Detect.ShareDataWikis,
		Alpha: cfg.Detect.Alpha, FDR: cfg.Detect.FDR, Margin: cfg.Detect.Margin,
		MinPrePeriod: time.Duration(cfg.Detect.MinPrePeriod), Attribution: time.Duration(cfg.Detect.Attribution),
		ResolveAfter: time.Duration(cfg.Detect.ResolveAfter), AnomalyWindow: time.Duration(cfg.Detect.AnomalyWindow),
		MinBuckets: cfg.Detect.MinBuckets, MinDistinct: cfg.Detect.MinDistinct, LeakMinEvents: cfg.Detect.LeakMinEvents,
	}
}

func decoderOptions(cfg config.Config, cls *ingest.Classifier) ingest.DecoderOptions {
	return ingest.DecoderOptions{
		MaxRecordBytes:            cfg.Kafka.MaxRecordBytes,
		MaxSkew:                   time.Duration(cfg.Kafka.MaxSkew),
		PretrainServergroupPrefix: cfg.Pretrain.ServergroupPrefix,
		PretrainDeployment:        cfg.Pretrain.Deployment,
		Classifier:                cls,
	}
}

// MarkerDeploy turns a configured deploy marker into a timeline entry.
func MarkerDeploy(scope, group, version string, at time.Time, source string) window.Deploy {
	sc := ingest.ScopeTrain
	if scope == "pretrain" {
		sc = ingest.ScopePretrain
	}
	return window.Deploy{Scope: sc, Group: group, Version: version, At: at.UnixNano(), Source: source}
}

func markerDeploy(m config.DeployMarker) window.Deploy {
	return MarkerDeploy(m.Scope, m.Group, m.Version, m.At, "config")
}

// classifier extends the default shared-data classification with the
// configured rules, which take precedence.
func classifier(c config.Classifier) (*ingest.Classifier, error) {
	extra := ingest.ClassifierConfig{Channels: c.Channels}
	for _, r := range c.Paths {
		extra.Paths = append(extra.Paths, ingest.PathRule{Contains: r.Contains, Class: r.Class})
	}
	cls, err := ingest.NewClassifier(ingest.DefaultClassifierConfig().Extend(extra))
	if err != nil {
		return nil, fmt.Errorf("classifier: %w", err)
	}
	return cls, nil
}

func dialer(clientID string, cl *config.Cluster) (*kafka.Dialer, error) {
	tc, err := ingest.TLSConfig(ingest.TLSOptions(cl.TLS))
	if err != nil {
		return nil, err
	}
	mech, err := ingest.SASLMechanism(cl.SASL.Mechanism, cl.SASL.Username, cl.SASL.PasswordFile)
	if err != nil {
		return nil, err
	}
	return ingest.NewDialer(clientID, tc, mech), nil
}

// Run reads and evaluates until ctx is done or, with End set, until every
// partition reached the end; then it evaluates what is left and returns.
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
	for {
		select {
		case err := <-done:
			p.finish()
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		case <-t.C:
			// While following (no End), evaluate only once the warm-up has
			// read every partition up to where it stood at the start: the
			// watermark follows the newest event of any partition, so a
			// bucket evaluated while a slower partition (the busy access log)
			// is still an hour behind would be judged, once and for good,
			// without its requests and its deploys.
			if p.opts.End.IsZero() && !p.Consumer.CaughtUp() {
				continue
			}
			p.evaluate(p.Store.Watermark())
		}
	}
}

// finish evaluates everything read. In replay the last records are final,
// so the watermark moves to the newest event: nothing later will come.
func (p *Pipeline) finish() {
	p.Store.Sync()
	wm := p.Store.Watermark()
	if !p.opts.End.IsZero() {
		wm = p.Store.Newest() + p.Store.BucketWidth()
		if end := p.opts.End.UnixNano(); wm > end {
			wm = end
		}
	}
	p.evaluate(wm)
}

func (p *Pipeline) evaluate(wm int64) {
	p.Store.Sync()
	start := time.Now()
	changed := p.Detector.Evaluate(wm)
	p.evalDur.Observe(time.Since(start).Seconds())
	all := p.Detector.Findings()
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
	if len(changed) > 0 && p.opts.OnChange != nil {
		p.opts.OnChange(changed)
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

// Ready reports whether the warm-up is done: every partition read up to the
// high-water mark it saw first.
func (p *Pipeline) Ready() bool { return p.Consumer.CaughtUp() }

// Close releases the window.
func (p *Pipeline) Close() error { return p.Store.Close() }
