package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/crypto/bcrypt"

	dto "github.com/prometheus/client_model/go"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/pipeline"
)

// The production topics, which the default configuration reads.
var prodTopics = []string{"k8s-mw-eqiad", "k8s-mw-codfw", "mediawiki.httpd.accesslog"}

// syncBuffer is a bytes.Buffer safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newKafka starts an in-process broker with the production topics.
func newKafka(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, prodTopics...))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// writeFile writes a file in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// testDaemon is `detector run` running in the test process.
type testDaemon struct {
	addr   string // bound web address, host:port
	stdout *syncBuffer
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// daemonOptions are the flags a test passes to `detector run`.
type daemonOptions struct {
	configFile    string
	brokers       []string
	alertmanagers []string
	resendDelay   time.Duration
	externalURL   string
	lifecycle     bool
	webConfigFile string
	limits        webLimits
}

// startDaemon runs runDaemon with options as realMain builds them from the
// flags, listening on 127.0.0.1:0, until stop or the end of the test. Its
// log is shown if the test fails.
func startDaemon(t *testing.T, do daemonOptions) *testDaemon {
	t.Helper()
	d := &testDaemon{stdout: &syncBuffer{}, logs: &syncBuffer{}, done: make(chan error, 1)}
	lvl := promslog.NewLevel()
	require.NoError(t, lvl.Set("debug"))
	listen := []string{"127.0.0.1:0"}
	systemd := false
	addrs := make(chan []net.Addr, 1)
	o := runOptions{
		common: commonOptions{
			configFile: do.configFile, brokers: do.brokers,
			logger: promslog.New(&promslog.Config{Writer: d.logs, Level: lvl}),
			stdout: d.stdout, stderr: d.logs,
		},
		alertmanagers: do.alertmanagers, resendDelay: do.resendDelay, externalURL: do.externalURL,
		enableLifecycle: do.lifecycle,
		limits:          do.limits,
		web:             &web.FlagConfig{WebListenAddresses: &listen, WebSystemdSocket: &systemd, WebConfigFile: &do.webConfigFile},
		listening:       func(a []net.Addr) { addrs <- a },
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- runDaemon(ctx, o) }()
	t.Cleanup(func() {
		_ = d.stop(t)
		if t.Failed() {
			t.Logf("detector log:\n%s\ndetector stdout:\n%s", d.logs, d.stdout)
		}
	})
	select {
	case a := <-addrs:
		require.Len(t, a, 1)
		d.addr = a[0].String()
	case err := <-d.done:
		d.done <- err
		t.Fatalf("detector exited at start: %v\n%s", err, d.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("detector did not listen within 30s\n%s", d.logs)
	}
	return d
}

// stop cancels the daemon's context, as SIGTERM does, and returns what
// runDaemon returned. The ordered shutdown is bounded by shutdownTimeout.
func (d *testDaemon) stop(t *testing.T) error {
	t.Helper()
	d.once.Do(func() {
		d.cancel()
		select {
		case d.err = <-d.done:
		case <-time.After(shutdownTimeout + 5*time.Second):
			d.err = errors.New("runDaemon did not return after its shutdown timeout")
			t.Error(d.err)
		}
	})
	return d.err
}

// get fetches a URL and returns the status and body.
func webGet(t *testing.T, c *http.Client, method, url, body string, hdr ...string) (int, string) {
	t.Helper()
	code, b, err := webFetch(t, c, method, url, body, hdr...)
	require.NoError(t, err)
	return code, b
}

func webFetch(t *testing.T, c *http.Client, method, url, body string, hdr ...string) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// newTLS writes a self-signed certificate for 127.0.0.1 and returns the
// certificate and key paths and a pool that trusts it.
func newTLS(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pretrain-detector test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile = writeFile(t, dir, "detector.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, dir, "detector.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	return certFile, keyFile, pool
}

// TestDaemonWebTLSAndBasicAuth runs the daemon with an exporter-toolkit web
// config (TLS and basic auth) and checks every endpoint through it.
func TestDaemonWebTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	cluster := newKafka(t)
	certFile, keyFile, pool := newTLS(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	webConfig := writeFile(t, dir, "web.yml", "tls_server_config:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+
		"\nbasic_auth_users:\n  prometheus: "+string(hash)+"\n")
	const goodConfig = "kafka:\n  max_wait: 100ms\n"
	cfgFile := writeFile(t, dir, "detector.yml", goodConfig)

	d := startDaemon(t, daemonOptions{configFile: cfgFile, brokers: cluster.ListenAddrs(), lifecycle: true, webConfigFile: webConfig})
	base := "https://" + d.addr
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	auth := func(user, pass string) []string {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(user, pass)
		return []string{"Authorization", r.Header.Get("Authorization")}
	}
	good := auth("prometheus", "s3cret")

	require.Eventually(t, func() bool {
		code, _, err := webFetch(t, client, "GET", base+"/-/ready", "", good...)
		return err == nil && code == 200
	}, 20*time.Second, 50*time.Millisecond, "ready once the (empty) topics are read")

	t.Run("credentials", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			hdr  []string
			want int
		}{
			{"none", nil, 401},
			{"wrong password", auth("prometheus", "nope"), 401},
			{"wrong user", auth("admin", "s3cret"), 401},
			{"right", good, 200},
		} {
			t.Run(tc.name, func(t *testing.T) {
				for _, path := range []string{"/metrics", "/-/healthy", "/-/ready", "/api/v1/findings", "/api/v1/status", "/debug/pprof/"} {
					code, body := webGet(t, client, "GET", base+path, "", tc.hdr...)
					require.Equal(t, tc.want, code, "%s: %s", path, body)
				}
			})
		}
	})
	t.Run("plain http to the TLS port fails", func(t *testing.T) {
		plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		code, body, err := webFetch(t, plain, "GET", "http://"+d.addr+"/metrics", "", good...)
		if err == nil {
			require.Equal(t, http.StatusBadRequest, code, "Go's TLS server answers plain HTTP with 400")
			require.NotContains(t, body, "detector_")
		}
		require.Eventually(t, func() bool {
			return strings.Contains(d.logs.String(), "client sent an HTTP request to an HTTPS server")
		}, 5*time.Second, 10*time.Millisecond, "the server's errors go to the detector's log")
	})
	t.Run("an untrusted certificate fails", func(t *testing.T) {
		untrusting := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		_, _, err := webFetch(t, untrusting, "GET", base+"/-/healthy", "", good...)
		var uerr *tls.CertificateVerificationError
		require.ErrorAs(t, err, &uerr)
	})
	t.Run("deploys: the timeline is read-only without the admin API", func(t *testing.T) {
		code, body := webGet(t, client, "GET", base+"/api/v1/deploys", "", good...)
		require.Equal(t, 200, code, "GET lists the deploys' verdicts")
		require.Equal(t, "[]\n", body)
		code, body = webGet(t, client, "POST", base+"/api/v1/deploys", `{"scope":"train","version":"x"}`, append([]string{"Content-Type", "application/json"}, good...)...)
		require.Equal(t, 404, code, body)
		require.Contains(t, body, "--web.enable-admin-api")
	})
	t.Run("reload", func(t *testing.T) {
		code, _ := webGet(t, client, "GET", base+"/-/reload", "", good...)
		require.Equal(t, 405, code)
		require.Equal(t, 1.0, scrapeValue(t, client, base, good, "detector_config_last_reload_successful"))

		// A deploy marker added to the file arrives with the reload.
		writeFile(t, dir, "detector.yml", goodConfig+"deploys:\n  - {scope: pretrain, version: 1.47.0-alpha, at: 2026-03-04T10:00:00Z}\n")
		code, body := webGet(t, client, "POST", base+"/-/reload", "", good...)
		require.Equal(t, 200, code, body)
		require.Contains(t, deploysInStatus(t, client, base, good), statusDeploy{Scope: "pretrain", Version: "1.47.0-alpha", At: "2026-03-04T10:00:00Z", Source: "config"})

		// A change only a restart applies is named in the log and a metric,
		// and the reload does not claim it.
		writeFile(t, dir, "detector.yml", goodConfig+"detect:\n  alpha: 0.0002\n")
		code, body = webGet(t, client, "POST", base+"/-/reload", "", good...)
		require.Equal(t, 200, code, body)
		require.Equal(t, 1.0, scrapeValue(t, client, base, good, "detector_config_restart_required"), "one section: detect")
		require.Contains(t, d.logs.String(), `msg="Configuration reloaded; some changes take effect only after a restart"`)
		require.Contains(t, d.logs.String(), `restart_required=[detect]`)

		// A bad file keeps the old configuration and says why.
		writeFile(t, dir, "detector.yml", "detect:\n  alpha: 2\n")
		code, body = webGet(t, client, "POST", base+"/-/reload", "", good...)
		require.Equal(t, 500, code)
		require.Contains(t, body, "detect.alpha")
		require.Equal(t, 0.0, scrapeValue(t, client, base, good, "detector_config_last_reload_successful"))

		writeFile(t, dir, "detector.yml", goodConfig)
		code, _ = webGet(t, client, "POST", base+"/-/reload", "", good...)
		require.Equal(t, 200, code)
		require.Equal(t, 1.0, scrapeValue(t, client, base, good, "detector_config_last_reload_successful"))
	})
	t.Run("metrics lint clean as served", func(t *testing.T) {
		code, body := webGet(t, client, "GET", base+"/metrics", "", good...)
		require.Equal(t, 200, code)
		problems, err := promlint.New(strings.NewReader(body)).Lint()
		require.NoError(t, err)
		require.Empty(t, problems)
	})
	t.Run("findings", func(t *testing.T) {
		code, body := webGet(t, client, "GET", base+"/api/v1/findings?state=firing", "", good...)
		require.Equal(t, 200, code)
		require.Equal(t, "[]\n", body)
	})

	require.NoError(t, d.stop(t))
	require.Contains(t, d.logs.String(), "Configuration reload failed")
}

type statusDeploy struct {
	Scope   string `json:"scope"`
	Group   string `json:"group,omitempty"`
	Version string `json:"version"`
	At      string `json:"at"`
	Source  string `json:"source"`
}

func deploysInStatus(t *testing.T, c *http.Client, base string, hdr []string) []statusDeploy {
	t.Helper()
	code, body := webGet(t, c, "GET", base+"/api/v1/status", "", hdr...)
	require.Equal(t, 200, code, body)
	var st struct {
		Deploys []statusDeploy `json:"deploys"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	return st.Deploys
}

// scrapeValue sums a metric's samples on the daemon's /metrics.
func scrapeValue(t *testing.T, c *http.Client, base string, hdr []string, name string) float64 {
	t.Helper()
	code, body := webGet(t, c, "GET", base+"/metrics", "", hdr...)
	require.Equal(t, 200, code)
	mfs := parseMetrics(t, body)
	mf, ok := mfs[name]
	require.True(t, ok, "no %s on /metrics", name)
	v := 0.0
	for _, m := range mf.GetMetric() {
		v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	return v
}

func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(text))
	require.NoError(t, err)
	return mfs
}

// daemonRegistry builds the registry as runDaemon does: the build and
// runtime collectors, the pipeline's stages, the notifier and the daemon's
// own series.
func daemonRegistry(t *testing.T) (*prometheus.Registry, *pipeline.Pipeline) {
	t.Helper()
	cfg := config.Default()
	cfg.OverrideBrokers([]string{"127.0.0.1:1"}) // never dialled: the pipeline is not run
	require.NoError(t, cfg.Validate())
	wikis, err := loadWikis(cfg)
	require.NoError(t, err)
	reg := newRegistry()
	p, err := pipeline.New(pipeline.Options{Config: cfg, Wikis: wikis, Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	_, err = alert.NewNotifier(alert.NotifierOptions{URLs: []string{"http://am1.example:9093", "http://am2.example:9093"}}, nil, reg)
	require.NoError(t, err)
	newDaemonMetrics(reg, p.Store.Watermark, time.Now)
	return reg, p
}

func TestDaemonMetricsLintAndNames(t *testing.T) {
	reg, _ := daemonRegistry(t)
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)

	mfs, err := reg.Gather()
	require.NoError(t, err)
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	// What issue 6 asks for, each with the label that must split it.
	for _, tc := range []struct{ name, label string }{
		{"detector_ingest_records_total", "topic"},
		{"detector_ingest_bytes_total", "topic"},
		{"detector_ingest_records_rejected_total", "reason"},
		{"detector_ingest_consumer_lag_records", "topic"},
		{"detector_window_watermark_timestamp_seconds", ""},
		{"detector_window_watermark_delay_seconds", ""},
		{"detector_window_fingerprint_catalogue_entries", ""},
		{"detector_window_ring_bytes", ""},
		{"detector_window_fastcache_bytes", ""},
		{"detector_window_fingerprint_evictions_total", ""},
		{"detector_window_events_dropped_total", "reason"},
		{"detector_detect_evaluation_duration_seconds", ""},
		{"detector_detect_findings_active", "kind"},
		{"detector_notifications_sent_total", "alertmanager"},
		{"detector_notifications_errors_total", "alertmanager"},
		{"detector_notifications_dropped_total", ""},
		{"detector_notifications_queue_length", ""},
		{"detector_build_info", "version"},
		{"detector_config_last_reload_successful", ""},
		{"detector_config_last_reload_success_timestamp_seconds", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mf, ok := byName[tc.name]
			require.True(t, ok, "missing")
			require.NotEmpty(t, mf.GetMetric(), "no series: label children are initialised at start")
			if tc.label != "" {
				require.Contains(t, labelNames(mf), tc.label)
			}
		})
	}
	// No series is split per wiki: anomalies go to Alertmanager.
	for _, mf := range mfs {
		for _, l := range labelNames(mf) {
			require.NotContains(t, []string{"wiki", "dbname", "database", "fingerprint", "finding_id"}, l, mf.GetName())
		}
	}
	// Every kind is there from the start, pending and firing, at 0.
	n := 0
	for _, m := range byName["detector_detect_findings_active"].GetMetric() {
		require.Zero(t, m.GetGauge().GetValue())
		n++
	}
	require.Equal(t, 10, n)
	require.Len(t, byName["detector_notifications_sent_total"].GetMetric(), 2, "one series per Alertmanager")
}

func labelNames(mf *dto.MetricFamily) []string {
	var out []string
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if !slices.Contains(out, l.GetName()) {
				out = append(out, l.GetName())
			}
		}
	}
	return out
}

func TestWatermarkDelay(t *testing.T) {
	now := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		wm   int64
		want float64 // -1: NaN
	}{
		{"no event yet", 0, -1},
		{"live", now.Add(-45 * time.Second).UnixNano(), 45},
		{"replaying old data", now.Add(-90 * time.Minute).UnixNano(), 5400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			newDaemonMetrics(reg, func() int64 { return tc.wm }, func() time.Time { return now })
			mfs, err := reg.Gather()
			require.NoError(t, err)
			var got *float64
			for _, mf := range mfs {
				if mf.GetName() == "detector_window_watermark_delay_seconds" {
					got = mf.GetMetric()[0].GetGauge().Value
				}
			}
			require.NotNil(t, got)
			if tc.want < 0 {
				require.NotEqual(t, *got, *got, "NaN")
				return
			}
			require.InDelta(t, tc.want, *got, 1e-9)
		})
	}
}
