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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/api"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/pipeline"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// daemon is `detector run` once built: the pipeline and what serves it, the
// Alertmanager notifier, the marker topic, the web handler and its
// listeners. newDaemon builds it; Run starts its goroutines, runs the
// pipeline until the context ends and shuts down in order; close releases
// what newDaemon built.
type daemon struct {
	o       runOptions
	cfg     config.Config // the configuration the daemon started with
	logger  *slog.Logger
	hup     <-chan os.Signal // SIGHUP: reload
	reloads chan chan error  // POST /-/reload: reload and reply
	// reloading is the reload coordinator's context, and refuses a POST
	// /-/reload once done: it ends at the signal, or when shutdown begins
	// (the pipeline may stop on its own: a broker unreachable at start),
	// by stopReloads.
	reloading   context.Context
	stopReloads context.CancelFunc

	p         *pipeline.Pipeline
	notifier  *alert.Notifier // nil without an Alertmanager
	markers   *markerTopic
	pages     *api.Pages
	metrics   *daemonMetrics
	srv       *http.Server
	listeners []net.Listener

	// wg tracks every goroutine Run starts (web listeners, notifier
	// sender, marker follower, reload coordinator, the pages' verdict
	// loop); shutdown waits for it.
	wg sync.WaitGroup
	// stopping is set once the pipeline has returned: not ready from then on.
	stopping atomic.Bool
	// signalled is when the daemon's context ended, Unix ns (0 while it
	// has not): the shutdown budget runs from there.
	signalled atomic.Int64
}

// newDaemon builds the daemon from cfg. Until Run, nothing is served or
// read; a failure releases what was built before it returns.
func newDaemon(ctx context.Context, o runOptions, cfg config.Config, wikis *wikimap.Map, hup <-chan os.Signal) (_ *daemon, err error) {
	d := &daemon{o: o, cfg: cfg, logger: o.common.logger, hup: hup, reloads: make(chan chan error)}
	reg := newRegistry()
	if d.notifier, err = newNotifier(o, cfg, reg, d.logger); err != nil {
		return nil, err
	}
	if d.p, err = d.newPipeline(wikis, reg); err != nil {
		return nil, err
	}
	d.reloading, d.stopReloads = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	d.metrics = newDaemonMetrics(reg, d.p.Store.Watermark, time.Now)
	if d.markers, err = newMarkerTopic(cfg, d.p, reg, d.logger); err != nil {
		return nil, err
	}
	addDeploy, err := d.markers.addDeploy(ctx, o.limits)
	if err != nil {
		return nil, err
	}
	h, err := d.newHandler(ctx, wikis, reg, addDeploy)
	if err != nil {
		return nil, err
	}
	// The server's own errors (TLS handshakes, panics in handlers) go to our
	// logger, not to the process's stderr in another format.
	d.srv = newWebServer(h, o.limits, d.logger)
	if d.listeners, err = listen(o); err != nil {
		return nil, err
	}
	return d, nil
}

// newNotifier builds the Alertmanager notifier: nil when neither the flags
// nor the file name an Alertmanager.
func newNotifier(o runOptions, cfg config.Config, reg prometheus.Registerer, logger *slog.Logger) (*alert.Notifier, error) {
	if len(o.alertmanagers) == 0 && len(cfg.Alerting.Alertmanagers) == 0 {
		return nil, nil
	}
	resend := time.Duration(cfg.Alerting.ResendDelay)
	if o.resendDelay > 0 {
		resend = o.resendDelay
	}
	opts := notifierOptions(cfg, splitList(o.alertmanagers), alertmanagerSets(cfg))
	opts.ResendDelay, opts.ExternalURL = resend, o.externalURL
	n, err := alert.NewNotifier(opts, logger.With("component", "notifier"), reg)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	return n, nil
}

// notifierOptions are the notifier options run and replay both take from
// the configuration: where to send, and what every alert carries.
func notifierOptions(cfg config.Config, urls []string, sets []alert.AlertmanagerSet) alert.NotifierOptions {
	return alert.NotifierOptions{
		URLs: urls, Sets: sets, ResendDelay: time.Duration(cfg.Alerting.ResendDelay),
		RunbookURL: cfg.Alerting.RunbookURL, DashboardURL: cfg.Alerting.DashboardURL,
		ExtraLabels: cfg.Alerting.Labels(),
	}
}

// newPipeline builds the pipeline with its outputs, both fed from its
// evaluation goroutine alone: the console prints the findings that
// changed; the notifier (if any) decides from every evaluation's findings
// what to send, re-send (once its resend delay is due, or Alertmanager
// would resolve the alert at its EndsAt while the finding fires on) and
// resolve.
func (d *daemon) newPipeline(wikis *wikimap.Map, reg prometheus.Registerer) (*pipeline.Pipeline, error) {
	sinks := alert.Sinks{alert.NewConsole(d.o.common.stdout)}
	if d.notifier != nil {
		sinks = append(sinks, d.notifier)
	}
	if d.o.sink != nil {
		sinks = append(sinks, d.o.sink)
	}
	return pipeline.New(pipeline.Options{Config: d.cfg, Wikis: wikis, Registry: reg, Logger: d.logger, Sink: sinks, Start: d.o.start})
}

// newHandler is the web handler: probes, findings, status, reload, deploy
// markers, metrics and the pages (d.pages, whose verdict loop Run
// starts). Its hooks that outlive a request's context (reload, marker
// writes) end with ctx.
func (d *daemon) newHandler(ctx context.Context, wikis *wikimap.Map, reg *prometheus.Registry, addDeploy func(api.DeployMarker) error) (http.Handler, error) {
	pages, err := api.NewPages(d.cfg, d.p, wikis, reg, d.logger, d.o.simulated)
	if err != nil {
		return nil, err
	}
	d.pages = pages
	sec := securityOf(d.o.limits, d.o.alertmanagers)
	return api.NewHandler(api.Options{
		Gatherer:     reg,
		Findings:     d.p.Findings,
		Ready:        func() (bool, string) { return d.ready(ctx) },
		Reload:       lifecycle(d.reloading, d.o.enableLifecycle, d.reloads),
		AddDeploy:    addDeploy,
		DeployMaxAge: time.Duration(d.cfg.Window.Length), DeployMaxAhead: time.Duration(d.cfg.DeployMarkers.MaxAhead),
		Status: func() any {
			st := api.Status(d.cfg, d.p)
			st["security"] = api.SecurityStatus(d.cfg, sec)
			return st
		},
		Mount:  pages.Register,
		Logger: d.logger,
	}), nil
}

// stoppedReason is /-/ready's word, after "shutting down: ", once ingest
// and the last evaluation have ended.
const stoppedReason = "ingest and evaluation stopped, draining alerts"

// ready is /-/ready: evaluation runs, the deploy markers are in, and the
// daemon is not stopping.
func (d *daemon) ready(ctx context.Context) (bool, string) {
	switch {
	case d.stopping.Load():
		// The pipeline has returned: what remains is the alert drain.
		return false, "shutting down: " + stoppedReason
	// ctx is done the moment the signal arrives: not ready from
	// then on, before ingest has even noticed.
	case ctx.Err() != nil:
		return false, "shutting down"
	}
	if ok, why := d.p.Readiness(); !ok {
		return false, why
	}
	if !d.markers.caughtUp() {
		return false, "reading the deploy markers from Kafka"
	}
	return true, ""
}

// listen opens every --web.listen-address, each capped at the connection
// limit. When one fails, those already open are closed.
func listen(o runOptions) ([]net.Listener, error) {
	listeners := make([]net.Listener, 0, len(*o.web.WebListenAddresses))
	for _, a := range *o.web.WebListenAddresses {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range listeners {
				_ = l.Close()
			}
			return nil, fmt.Errorf("web.listen-address: %w", err)
		}
		listeners = append(listeners, limitListener(l, o.limits))
	}
	return listeners, nil
}

// close releases what newDaemon built: the marker topic's writer, then the
// pipeline's window. The listeners are the HTTP server's to close (shutdown).
func (d *daemon) close() {
	d.stopReloads()
	if d.markers != nil {
		_ = d.markers.close()
	}
	_ = d.p.Close()
}

// Run starts the daemon's goroutines, runs the pipeline until ctx ends (or
// the pipeline fails) and then shuts down in order (shutdown). It returns
// once every goroutine it started has ended.
func (d *daemon) Run(ctx context.Context) error {
	d.serve()
	d.markers.run(ctx, &d.wg)
	nctx, stopNotifier := context.WithCancel(context.Background())
	defer stopNotifier()
	if d.notifier != nil {
		d.wg.Go(func() { d.notifier.Run(nctx) })
	}
	// One goroutine serves SIGHUP and POST /-/reload alike; it ends with
	// ctx, or when shutdown begins, before shutdown waits for the group.
	d.wg.Go(func() { d.reloadLoop(d.reloading) })
	// The verdict loop ends once the pipeline has returned, whether the
	// signal came or the pipeline failed on its own: nothing new to judge.
	vctx, stopVerdicts := context.WithCancel(ctx)
	defer stopVerdicts()
	d.wg.Go(func() { d.pages.Run(vctx) })

	// The shutdown budget runs from the signal, not from whenever ingest
	// gets round to returning: a slow stop of the readers must eat into the
	// alert drain, not push the exit past what Kubernetes waits for.
	stopSignalClock := context.AfterFunc(ctx, func() { d.signalled.Store(time.Now().UnixNano()) })
	defer stopSignalClock()

	d.logger.Info("Starting detector", "version", version.Info(), "topics", len(d.cfg.Topics()), "cohort", d.cfg.Pretrain.Cohort)
	runErr := d.p.Run(ctx)
	stopVerdicts()
	return d.shutdown(runErr, stopNotifier)
}

// serve tells o.listening the bound addresses, then serves HTTP on every
// listener, one goroutine each, until shutdown stops the server.
func (d *daemon) serve() {
	if d.o.listening != nil {
		addrs := make([]net.Addr, 0, len(d.listeners))
		for _, l := range d.listeners {
			addrs = append(addrs, l.Addr())
		}
		d.o.listening(addrs)
	}
	for _, l := range d.listeners {
		d.wg.Go(func() {
			if err := web.Serve(l, d.srv, d.o.web, d.logger); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.logger.Error("Web server", "err", err)
			}
		})
	}
}

// shutdown stops the daemon once the pipeline's Run has returned runErr,
// in order: (1) not ready (already, from the signal); (2) ingest has
// stopped (Run returned) and (3) the last evaluation is done; (4) drain the
// alert queue under a deadline, then stopNotifier ends the sender; (5) stop
// HTTP last so /metrics shows the drain, with a slice of the budget of its
// own. The budget, shutdownTimeout, runs from the signal. It returns once
// every goroutine Run started has ended.
func (d *daemon) shutdown(runErr error, stopNotifier context.CancelFunc) error {
	d.stopping.Store(true)
	d.markers.stop()
	d.stopReloads() // without a signal (the pipeline failed), nothing else ends it
	start := time.Now()
	if ns := d.signalled.Load(); ns != 0 {
		start = time.Unix(0, ns)
	}
	end := start.Add(shutdownTimeout)
	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	if d.notifier != nil {
		dctx, cancel := context.WithDeadline(context.Background(), end.Add(-httpShutdownSlice))
		if err := d.notifier.Drain(dctx); err != nil {
			errs = append(errs, fmt.Errorf("drain alerts: %w", err))
		}
		cancel()
		stopNotifier()
	}
	// Never less than the slice: a drain that used all its time still
	// leaves open requests (a Prometheus scrape) their chance to finish.
	hctx, cancel := context.WithDeadline(context.Background(), later(end, time.Now().Add(httpShutdownSlice)))
	defer cancel()
	if err := d.srv.Shutdown(hctx); err != nil {
		errs = append(errs, fmt.Errorf("stop web server: %w", err))
	}
	d.wg.Wait()
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
	restart              *prometheus.GaugeVec // by configuration section
}

// reloaded records a successful reload after which the sections in restart
// still differ from what runs.
func (m *daemonMetrics) reloaded(restart []string) {
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
	m.restart.Reset()
	for _, s := range restart {
		m.restart.WithLabelValues(s).Set(1)
	}
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
		restart: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "detector", Name: "config_restart_required",
			Help: "1 for each top-level configuration section that the last successful reload changed but only a restart applies."},
			[]string{"section"}),
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
