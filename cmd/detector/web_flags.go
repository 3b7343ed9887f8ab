package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/api"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/markertopic"
	"github.com/wikimedia/pretrain-detector/pipeline"
)

// HTTP server limits. The read timeout and the connection cap are flags,
// as in Prometheus; the others are fixed here, long enough for a 30-s CPU
// profile from /debug/pprof/profile and for slow scrapes.
const (
	defaultReadTimeout    = 30 * time.Second
	defaultMaxConnections = 512
	maxReadHeaderTimeout  = 10 * time.Second
	webWriteTimeout       = 90 * time.Second
	webIdleTimeout        = 2 * time.Minute
)

// webLimits are the web flags of `detector run` beyond exporter-toolkit's.
type webLimits struct {
	// enableAdminAPI turns on POST /api/v1/deploys.
	enableAdminAPI bool
	// readTimeout bounds reading a whole request, body included (0: default).
	readTimeout time.Duration
	// maxConnections caps simultaneous connections (0: default).
	maxConnections int
}

// addWebLimitFlags adds --web.enable-admin-api, --web.read-timeout and
// --web.max-connections, named and defaulted as in Prometheus (read
// timeout shorter: the detector's requests are small).
func addWebLimitFlags(cmd *kingpin.CmdClause, l *webLimits) {
	cmd.Flag("web.enable-admin-api", "Enable POST /api/v1/deploys, which adds deploy markers (through the marker topic, deploy_markers.topic).").BoolVar(&l.enableAdminAPI)
	cmd.Flag("web.read-timeout", "Maximum duration before timing out the read of a request, body included, and closing idle connections.").
		Default(defaultReadTimeout.String()).DurationVar(&l.readTimeout)
	cmd.Flag("web.max-connections", "Maximum number of simultaneous connections to the web endpoints.").
		Default(fmt.Sprint(defaultMaxConnections)).IntVar(&l.maxConnections)
}

func (l webLimits) withDefaults() webLimits {
	if l.readTimeout <= 0 {
		l.readTimeout = defaultReadTimeout
	}
	if l.maxConnections <= 0 {
		l.maxConnections = defaultMaxConnections
	}
	return l
}

// newWebServer is the HTTP server of `detector run` with its limits: a
// client that trickles its request (headers or body) is cut off at the read
// timeout, a slow reader of a response at the write timeout, an idle
// keep-alive connection at the idle timeout. Its errors go to logger.
func newWebServer(h http.Handler, l webLimits, logger *slog.Logger) *http.Server {
	l = l.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(l.readTimeout, maxReadHeaderTimeout),
		ReadTimeout:       l.readTimeout,
		WriteTimeout:      webWriteTimeout,
		IdleTimeout:       webIdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.With("component", "web").Handler(), slog.LevelError),
	}
}

// limitListener caps the connections l accepts at once: beyond the cap,
// new connections wait in the kernel's backlog instead of each costing a
// goroutine and buffers.
func limitListener(ln net.Listener, l webLimits) net.Listener {
	return netutil.LimitListener(ln, l.withDefaults().maxConnections)
}

// checkAlertmanagerFlags refuses --alertmanager.url values with user info:
// a command line shows in ps and at /debug/pprof/cmdline. The message names
// the config file's place for credentials.
func checkAlertmanagerFlags(urls []string) error {
	for _, raw := range splitList(urls) {
		u, err := url.Parse(raw)
		if err != nil || u.User == nil {
			continue // other faults are the notifier's to report
		}
		return fmt.Errorf("--alertmanager.url %q: credentials on the command line are refused (ps and /debug/pprof/cmdline show them); "+
			"put them in the config file under alerting.alertmanagers[] (basic_auth.password_file, authorization.credentials_file)", u.Redacted())
	}
	return nil
}

// alertmanagerSets turns the config file's Alertmanager sets into the
// notifier's.
func alertmanagerSets(cfg config.Config) []alert.AlertmanagerSet {
	var out []alert.AlertmanagerSet
	for _, s := range cfg.Alerting.Alertmanagers {
		out = append(out, alert.AlertmanagerSet{URLs: s.URLs, HTTPConfig: s.HTTPClientConfig, Timeout: time.Duration(s.Timeout)})
	}
	return out
}

// replayTargets splits replay's --alertmanager.url values: a URL that a
// set of alerting.alertmanagers[] lists is sent with that set's client
// configuration (its credentials and TLS), the others without. Replay thus
// reaches an Alertmanager behind basic auth without a password on its
// command line, and sends only where it was told to.
func replayTargets(cfg config.Config, urls []string) (plain []string, sets []alert.AlertmanagerSet) {
	norm := func(u string) string { return strings.TrimRight(u, "/") }
	for _, u := range urls {
		found := false
		for _, s := range cfg.Alerting.Alertmanagers {
			if slices.ContainsFunc(s.URLs, func(v string) bool { return norm(v) == norm(u) }) {
				sets = append(sets, alert.AlertmanagerSet{URLs: []string{u}, HTTPConfig: s.HTTPClientConfig, Timeout: time.Duration(s.Timeout)})
				found = true
				break
			}
		}
		if !found {
			plain = append(plain, u)
		}
	}
	return plain, sets
}

// markerTopic is the marker topic's writer and reader for one daemon;
// both are nil when deploy_markers.topic is empty.
type markerTopic struct {
	writer *markertopic.Writer
	reader *markertopic.Reader
	cancel context.CancelFunc // stops the reader
}

// newMarkerTopic builds the marker topic's reader (which adds every marker
// to p's deploy timeline) and writer, on the cluster and with the TLS and
// SASL settings of deploy_markers.cluster.
func newMarkerTopic(cfg config.Config, p *pipeline.Pipeline, reg prometheus.Registerer, logger *slog.Logger) (*markerTopic, error) {
	cl := cfg.MarkerCluster()
	if cl == nil {
		return &markerTopic{}, nil
	}
	tc, err := ingest.TLSConfig(ingest.TLSOptions(cl.TLS))
	if err != nil {
		return nil, fmt.Errorf("deploy_markers: kafka cluster %s: %w", cl.Name, err)
	}
	mech, err := ingest.SASLMechanism(cl.SASL.Mechanism, cl.SASL.Username, cl.SASL.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("deploy_markers: kafka cluster %s: %w", cl.Name, err)
	}
	length := time.Duration(cfg.Window.Length)
	o := markertopic.Options{
		Brokers: cl.Brokers, Topic: cfg.DeployMarkers.Topic, ClientID: "pretrain-detector", TLS: tc, SASL: mech,
		Since: time.Now().Add(-length), MaxAge: length, MaxAhead: time.Duration(cfg.DeployMarkers.MaxAhead),
		MaxWait: time.Duration(cfg.Kafka.MaxWait), Recheck: time.Duration(cfg.Kafka.TopicRecheck),
		Apply: p.Store.AddMarker, Logger: logger.With("component", "markers"), Registry: reg,
	}
	m := &markerTopic{}
	if m.reader, err = markertopic.NewReader(o); err != nil {
		return nil, fmt.Errorf("deploy_markers: %w", err)
	}
	if m.writer, err = markertopic.NewWriter(o); err != nil {
		return nil, fmt.Errorf("deploy_markers: %w", err)
	}
	return m, nil
}

// caughtUp reports whether the markers of the window are in (true when the
// topic is off).
func (m *markerTopic) caughtUp() bool { return m.reader == nil || m.reader.CaughtUp() }

// run follows the topic until ctx is done or stop is called.
func (m *markerTopic) run(ctx context.Context, wg *sync.WaitGroup) {
	if m.reader == nil {
		return
	}
	ctx, m.cancel = context.WithCancel(ctx)
	wg.Go(func() { _ = m.reader.Run(ctx) })
}

// stop ends the reader: at shutdown, which also follows a failed start of
// the pipeline, when no signal cancelled the daemon's context.
func (m *markerTopic) stop() {
	if m.cancel != nil {
		m.cancel()
	}
}

// addDeploy is the deploys API's hook: nil unless the admin API is on. The
// marker goes to the topic only; this replica, like every other, adds it
// when it reads it back.
func (m *markerTopic) addDeploy(ctx context.Context, l webLimits) (func(api.DeployMarker) error, error) {
	if !l.enableAdminAPI {
		return nil, nil
	}
	if m.writer == nil {
		return nil, errors.New("--web.enable-admin-api needs deploy_markers.topic: markers kept in one process's memory would differ between replicas and vanish on restart")
	}
	return func(d api.DeployMarker) error {
		return m.writer.Write(ctx, markertopic.Marker{Scope: d.Scope, Group: d.Group, Version: d.Version, At: d.At, By: d.By})
	}, nil
}

// close closes the writer.
func (m *markerTopic) close() error {
	if m.writer == nil {
		return nil
	}
	return m.writer.Close()
}

// securityOf is what /api/v1/status reports of the web limits and the
// --alertmanager.url flags, as running (defaults applied).
func securityOf(l webLimits, alertmanagerFlags []string) api.Security {
	l = l.withDefaults()
	return api.Security{AdminAPI: l.enableAdminAPI, ReadTimeout: l.readTimeout, MaxConnections: l.maxConnections,
		AlertmanagerURLs: splitList(alertmanagerFlags)}
}

// logSecurityWarnings says at start what is configured unsafely on
// purpose, so it is seen and not only in the file.
func logSecurityWarnings(cfg config.Config, logger *slog.Logger) {
	for _, cl := range cfg.Kafka.Clusters {
		if cl.TLS.Enabled && cl.TLS.InsecureSkipVerify {
			logger.Warn("Kafka TLS does not verify the brokers' certificates (tls.insecure_skip_verify): anyone on the path can read and change the records",
				"cluster", cl.Name)
		}
		if cl.SASL.Mechanism == "PLAIN" && !cl.TLS.Enabled {
			logger.Warn("Kafka SASL PLAIN without TLS (sasl.allow_plaintext): the password crosses the network in clear", "cluster", cl.Name)
		}
	}
}
