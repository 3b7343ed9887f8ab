package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/pipeline"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

type runOptions struct {
	common          commonOptions
	alertmanagers   []string
	resendDelay     time.Duration
	externalURL     string
	enableLifecycle bool
	web             *web.FlagConfig
	limits          webLimits // --web.enable-admin-api, --web.read-timeout, --web.max-connections
	// listening, when set, is told the bound web addresses before serving
	// starts: tests listen on 127.0.0.1:0 and need the port.
	listening func([]net.Addr)
}

// loadConfig reads the config file (or the defaults) and applies the flags
// that override it.
func loadConfig(c commonOptions) (config.Config, error) {
	cfg := config.Default()
	if c.configFile != "" {
		var err error
		if cfg, err = config.Load(c.configFile); err != nil {
			return config.Config{}, err
		}
	}
	cfg.OverrideBrokers(splitList(c.brokers))
	if err := cfg.Validate(); err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}

func loadWikis(cfg config.Config) (*wikimap.Map, error) {
	if cfg.Wikis.MediaWikiConfigDir != "" {
		m, err := wikimap.Load(cfg.Wikis.MediaWikiConfigDir)
		if err != nil {
			return nil, fmt.Errorf("wikis.mediawiki_config_dir: %w", err)
		}
		return m, nil
	}
	m, err := wikimap.Default()
	if err != nil {
		return nil, fmt.Errorf("built-in wiki map: %w", err)
	}
	return m, nil
}

// splitList accepts both repeated flags and comma-separated values.
func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(versioncollector.NewCollector("detector"), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// runDaemon is `detector run`: warm up from Kafka, then detect until told to stop.
func runDaemon(ctx context.Context, o runOptions) error {
	logger := o.common.logger
	// Register SIGHUP before the slow start so an early reload is not lost.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := checkAlertmanagerFlags(o.alertmanagers); err != nil {
		return err
	}
	cfg, err := loadConfig(o.common)
	if err != nil {
		return err
	}
	logSecurityWarnings(cfg, logger)
	if *o.web.WebConfigFile != "" {
		if err := web.Validate(*o.web.WebConfigFile); err != nil {
			return fmt.Errorf("web.config.file: %w", err)
		}
	}
	wikis, err := loadWikis(cfg)
	if err != nil {
		return err
	}
	reg := newRegistry()

	var notifier *alert.Notifier
	resend := time.Duration(cfg.Alerting.ResendDelay)
	if o.resendDelay > 0 {
		resend = o.resendDelay
	}
	if len(o.alertmanagers) > 0 || len(cfg.Alerting.Alertmanagers) > 0 {
		notifier, err = alert.NewNotifier(alert.NotifierOptions{
			URLs: splitList(o.alertmanagers), Sets: alertmanagerSets(cfg), ResendDelay: resend, ExternalURL: o.externalURL,
			RunbookURL: cfg.Alerting.RunbookURL, DashboardURL: cfg.Alerting.DashboardURL,
			ExtraLabels: cfg.Alerting.Labels(),
		}, logger.With("component", "notifier"), reg)
		if err != nil {
			return fmt.Errorf("alertmanager: %w", err)
		}
	}
	console := alert.NewConsole(o.common.stdout)
	var p *pipeline.Pipeline
	p, err = pipeline.New(pipeline.Options{
		Config: cfg, Wikis: wikis, Registry: reg, Logger: logger,
		OnChange: func(changed []detect.Finding) {
			if err := console.Notify(changed); err != nil {
				logger.Warn("Printing findings", "err", err)
			}
		},
		// Sends, resends and resolutions are all decided here, in the
		// evaluation goroutine, the notifier's only caller: Update sends
		// what changed and re-sends a firing alert once its resend delay
		// is due, or Alertmanager would resolve it at its EndsAt while the
		// finding fires on.
		OnEvaluated: func(all []detect.Finding) {
			if notifier != nil {
				notifier.Update(all)
			}
		},
	})
	if err != nil {
		return err
	}
	defer func() { _ = p.Close() }()
	dm := newDaemonMetrics(reg, p.Store.Watermark, time.Now)
	markers, err := newMarkerTopic(cfg, p, reg, logger)
	if err != nil {
		return err
	}
	defer func() { _ = markers.close() }()
	addDeploy, err := markers.addDeploy(ctx, o.limits)
	if err != nil {
		return err
	}

	var stopping atomic.Bool
	reloads := make(chan chan error)
	// The reload coordinator ends with the daemon's context or, when the
	// pipeline stops by itself (a failed start), at shutdown.
	reloadCtx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	handler := alert.NewHandler(alert.WebOptions{
		Gatherer: reg,
		Findings: p.Findings,
		Ready: func() (bool, string) {
			switch {
			// ctx is done the moment the signal arrives: not ready from
			// then on, before ingest has even noticed.
			case stopping.Load() || ctx.Err() != nil:
				return false, "shutting down"
			}
			if ok, why := p.Readiness(); !ok {
				return false, why
			}
			if !markers.caughtUp() {
				return false, "reading the deploy markers from Kafka"
			}
			return true, ""
		},
		Reload:       lifecycle(reloadCtx, o.enableLifecycle, reloads),
		AddDeploy:    addDeploy,
		DeployMaxAge: time.Duration(cfg.Window.Length), DeployMaxAhead: time.Duration(cfg.DeployMarkers.MaxAhead),
		Status: func() any {
			st := status(cfg, p).(map[string]any)
			st["security"] = securityStatus(cfg, o.limits, o.alertmanagers)
			return st
		},
		Mount:  webUI(ctx, cfg, p, wikis, reg, logger, false),
		Logger: logger,
	})
	// The server's own errors (TLS handshakes, panics in handlers) go to our
	// logger, not to the process's stderr in another format.
	srv := newWebServer(handler, o.limits, logger)
	listeners := make([]net.Listener, 0, len(*o.web.WebListenAddresses))
	for _, a := range *o.web.WebListenAddresses {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("web.listen-address: %w", err)
		}
		listeners = append(listeners, limitListener(l, o.limits))
	}
	if o.listening != nil {
		addrs := make([]net.Addr, 0, len(listeners))
		for _, l := range listeners {
			addrs = append(addrs, l.Addr())
		}
		o.listening(addrs)
	}
	var wg sync.WaitGroup
	for _, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := web.Serve(l, srv, o.web, logger); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("Web server", "err", err)
			}
		}()
	}

	markers.run(ctx, &wg)

	nctx, cancelNotifier := context.WithCancel(context.Background())
	defer cancelNotifier()
	if notifier != nil {
		wg.Add(1)
		go func() { defer wg.Done(); notifier.Run(nctx) }()
	}

	// One goroutine serves SIGHUP and POST /-/reload alike.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var reply chan error
			select {
			case <-reloadCtx.Done():
				return
			case <-hup:
			case reply = <-reloads:
			}
			err := reloadConfig(o.common, p, cfg, logger)
			if err != nil {
				logger.Error("Configuration reload failed; keeping the old one", "err", err)
				dm.reloadOK.Set(0)
			} else {
				logger.Info("Configuration reloaded")
				dm.reloadOK.Set(1)
				dm.reloadTime.SetToCurrentTime()
			}
			if reply != nil {
				reply <- err
			}
		}
	}()

	// The shutdown budget runs from the signal, not from whenever ingest
	// gets round to returning: a slow stop of the readers must eat into the
	// alert drain, not push the exit past what Kubernetes waits for.
	var signalled atomic.Int64
	stopSignalClock := context.AfterFunc(ctx, func() { signalled.Store(time.Now().UnixNano()) })
	defer stopSignalClock()

	logger.Info("Starting detector", "version", version.Info(), "topics", len(cfg.Topics()), "cohort", cfg.Pretrain.Cohort)
	runErr := p.Run(ctx)

	// Shutdown, in order: (1) not ready (already, from the signal); (2)
	// ingest has stopped (Run returned) and (3) the last evaluation is done;
	// (4) drain the alert queue under a deadline; (5) stop HTTP last so
	// /metrics shows the drain, with a slice of the budget of its own.
	stopping.Store(true)
	markers.stop()
	stopReload()
	start := time.Now()
	if ns := signalled.Load(); ns != 0 {
		start = time.Unix(0, ns)
	}
	end := start.Add(shutdownTimeout)
	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	if notifier != nil {
		dctx, cancel := context.WithDeadline(context.Background(), end.Add(-httpShutdownSlice))
		if err := notifier.Drain(dctx); err != nil {
			errs = append(errs, fmt.Errorf("drain alerts: %w", err))
		}
		cancel()
		cancelNotifier()
	}
	// Never less than the slice: a drain that used all its time still
	// leaves open requests (a Prometheus scrape) their chance to finish.
	hctx, cancel := context.WithDeadline(context.Background(), later(end, time.Now().Add(httpShutdownSlice)))
	defer cancel()
	if err := srv.Shutdown(hctx); err != nil {
		errs = append(errs, fmt.Errorf("stop web server: %w", err))
	}
	wg.Wait()
	return errors.Join(errs...)
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// daemonMetrics are the daemon's own series, besides those of the stages.
type daemonMetrics struct {
	reloadOK, reloadTime prometheus.Gauge
}

// newDaemonMetrics registers the reload status and the watermark delay.
// watermark is the window's (Unix ns, 0 before the first event).
func newDaemonMetrics(reg prometheus.Registerer, watermark func() int64, now func() time.Time) *daemonMetrics {
	f := promauto.With(reg)
	m := &daemonMetrics{
		reloadOK: f.NewGauge(prometheus.GaugeOpts{Namespace: "detector", Name: "config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful."}),
		reloadTime: f.NewGauge(prometheus.GaugeOpts{Namespace: "detector", Name: "config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload."}),
	}
	// The window exports the watermark as a time; alerting on "event time
	// stopped advancing" wants its age, which only the wall clock can give.
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "detector", Subsystem: "window", Name: "watermark_delay_seconds",
		Help: "Wall-clock time minus the watermark: how far behind now detection runs. NaN before the first event."},
		func() float64 {
			wm := watermark()
			if wm <= 0 {
				return math.NaN()
			}
			return float64(now().UnixNano()-wm) / 1e9
		})
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
	return m
}

// lifecycle returns the /-/reload hook when enabled. Once ctx is done the
// reload goroutine is gone, so a late request is refused instead of waiting
// forever (and holding up the HTTP server's shutdown).
func lifecycle(ctx context.Context, enabled bool, reloads chan chan error) func() error {
	if !enabled {
		return nil
	}
	return func() error {
		reply := make(chan error, 1)
		select {
		case reloads <- reply:
		case <-ctx.Done():
			return errors.New("shutting down")
		}
		return <-reply // taken: the goroutine always answers
	}
}

// reloadConfig re-reads the configuration. What can change without a
// restart is applied (deploy markers are added; one removed from the file
// stays until a restart); every other section that differs from running,
// the configuration the daemon started with, is named in the log as
// waiting for a restart, so a reload never claims more than it did. A bad
// file never replaces a good one.
func reloadConfig(c commonOptions, p *pipeline.Pipeline, running config.Config, logger *slog.Logger) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	for _, m := range cfg.Deploys {
		p.Store.AddDeploy(pipeline.MarkerDeploy(m.Scope, m.Group, m.Version, m.At, "config"))
	}
	if live, restart := configChanges(running, cfg); len(restart) > 0 {
		logger.Warn("Configuration changes that take effect only after a restart", "sections", restart, "applied", live)
	}
	return nil
}

// status is /api/v1/status: configuration without secrets and progress.
func status(cfg config.Config, p *pipeline.Pipeline) any {
	type cluster struct {
		Name    string   `json:"name"`
		Brokers []string `json:"brokers"`
		TLS     bool     `json:"tls"`
		SASL    string   `json:"sasl_mechanism,omitempty"`
		Topics  []string `json:"topics"`
	}
	var cls []cluster
	for _, c := range cfg.Kafka.Clusters {
		cl := cluster{Name: c.Name, Brokers: c.Brokers, TLS: c.TLS.Enabled, SASL: c.SASL.Mechanism}
		for _, t := range c.Topics {
			cl.Topics = append(cl.Topics, t.Name+" ("+t.Format+")")
		}
		cls = append(cls, cl)
	}
	// The watermark is that of the last evaluation: what has been judged.
	wm := p.EvaluatedTo()
	var wmt *time.Time
	if wm > 0 {
		t := time.Unix(0, wm).UTC()
		wmt = &t
	}
	ready, why := p.Readiness()
	a := p.Assessment()
	setAside := a.SetAside
	if setAside == nil {
		setAside = []ingest.SetAside{}
	}
	fleet, since := p.FleetIncident()
	type deploy struct {
		Scope   string    `json:"scope"`
		Group   string    `json:"group,omitempty"`
		Version string    `json:"version"`
		At      time.Time `json:"at"`
		Source  string    `json:"source"`
		Initial bool      `json:"initial,omitempty"`
	}
	deploys := []deploy{}
	for _, d := range p.Store.Deploys(nil) {
		deploys = append(deploys, deploy{Scope: d.Scope.String(), Group: d.Group, Version: d.Version,
			At: time.Unix(0, d.At).UTC(), Source: d.Source, Initial: d.Initial})
	}
	return map[string]any{
		"version":   version.Version,
		"revision":  version.GetRevision(),
		"ready":     ready,
		"not_ready": why,
		"watermark": wmt,
		"ingest": map[string]any{
			"warmed_up":          a.WarmedUp,
			"missing_topics":     p.Consumer.Missing(),
			"partitions_stalled": setAside,
		},
		"cohort":         cfg.Pretrain.Cohort,
		"kafka":          cls,
		"fleet_incident": map[string]any{"active": fleet, "since": since},
		"cohort_test":    p.CohortStatus(),
		"window":         p.Store.Stats(),
		"deploys":        deploys,
	}
}
