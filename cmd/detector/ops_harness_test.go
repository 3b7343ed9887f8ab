package main

// The harness of the operational tests (ops_*_test.go): an in-process
// Kafka broker whose client-facing port can be cut and restored while it
// keeps its data, a feeder that writes simulated traffic through a side
// port the cut never touches, the daemon run in-process through runDaemon or
// as a child process (the test binary re-executed), and helpers that read
// its HTTP endpoints and metrics. Identifiers start with "ops" so they cannot
// clash with other tests of this package.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// opsLong selects the full-length form of the operational tests (a 30-s
// broker outage, more traffic). Without it each runs a short form.
var opsLong = flag.Bool("ops.long", false, "run the long forms of the operational fault tests")

// opsTopics are the topics of the production defaults, which the simulator writes.
var opsTopics = []string{"k8s-mw-eqiad", "k8s-mw-codfw", "mediawiki.httpd.accesslog"}

// --- a broker port that can be cut ---------------------------------------

// opsListener is the listener kfake serves on (kfake.ListenFn). It merges
// two real listeners: the public one, whose address kfake advertises and
// the daemon uses, and a side one for the test's own producers and admin
// requests. Down closes the public listener (new connections are refused,
// as from a stopped broker) and every connection accepted on it; Up listens
// on the same port again. kfake keeps its data throughout.
type opsListener struct {
	public string
	side   net.Listener

	conns  chan net.Conn
	closed chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	pub  net.Listener // nil while down
	open map[net.Conn]struct{}
	shut bool
}

func newOpsListener() (*opsListener, error) {
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	side, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = pub.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	l := &opsListener{public: pub.Addr().String(), side: side, pub: pub,
		conns: make(chan net.Conn), closed: make(chan struct{}), open: map[net.Conn]struct{}{}}
	l.serve(side, false)
	l.serve(pub, true)
	return l, nil
}

// serve accepts on one real listener until it is closed.
func (l *opsListener) serve(ln net.Listener, public bool) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if public {
				l.mu.Lock()
				if l.pub != ln { // cut while accepting
					l.mu.Unlock()
					_ = c.Close()
					continue
				}
				tc := &opsConn{Conn: c, l: l}
				l.open[tc] = struct{}{}
				l.mu.Unlock()
				c = tc
			}
			select {
			case l.conns <- c:
			case <-l.closed:
				_ = c.Close()
				return
			}
		}
	}()
}

// opsConn forgets itself when closed.
type opsConn struct {
	net.Conn
	l *opsListener
}

func (c *opsConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.open, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

func (l *opsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *opsListener) Addr() net.Addr {
	a, _ := net.ResolveTCPAddr("tcp", l.public)
	return a
}

func (l *opsListener) Close() error {
	l.mu.Lock()
	if l.shut {
		l.mu.Unlock()
		return nil
	}
	l.shut = true
	close(l.closed)
	if l.pub != nil {
		_ = l.pub.Close()
	}
	open := slices.Collect(maps.Keys(l.open))
	l.mu.Unlock()
	_ = l.side.Close()
	for _, c := range open {
		_ = c.Close()
	}
	l.wg.Wait()
	return nil
}

// Down cuts the public port: it stops listening and drops every
// connection made through it.
func (l *opsListener) Down() {
	l.mu.Lock()
	pub := l.pub
	l.pub = nil
	open := slices.Collect(maps.Keys(l.open))
	l.mu.Unlock()
	if pub != nil {
		_ = pub.Close()
	}
	for _, c := range open {
		_ = c.Close()
	}
}

// Up listens on the public port again.
func (l *opsListener) Up() error {
	var pub net.Listener
	var err error
	// The port was ours a moment ago; a TIME_WAIT socket of a dropped
	// connection cannot hold it (Go sets SO_REUSEADDR), but retry briefly.
	for range 50 {
		if pub, err = net.Listen("tcp", l.public); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen on %s again: %w", l.public, err)
	}
	l.mu.Lock()
	l.pub = pub
	l.mu.Unlock()
	l.serve(pub, true)
	return nil
}

// --- the broker ------------------------------------------------------------

// opsKafka is an in-process Kafka-protocol broker (kfake) behind an opsListener.
type opsKafka struct {
	c   *kfake.Cluster
	ln  *opsListener   // broker 0's, the one the daemon is given
	lns []*opsListener // every broker's, by node ID

	// ctx is the side transports' context: cancelling it at cleanup ends
	// their background metadata goroutines whatever requests are left.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	trs    []*kafka.Transport // side transports, closed at cleanup

	// ClientTLS and ClientSASL are what the test's own clients need when
	// the broker requires them; set them before the first Writer.
	ClientTLS  *tls.Config
	ClientSASL sasl.Mechanism
}

// opsStartKafka starts a one-broker cluster with the given topics. Records
// up to 8 MiB are accepted, so oversize records reach the detector.
func opsStartKafka(t *testing.T, partitions int32, topics []string, extra ...kfake.Opt) *opsKafka {
	t.Helper()
	return opsStartKafkaN(t, 1, partitions, topics, extra...)
}

// opsStartKafkaN is opsStartKafka with several brokers, each behind its
// own opsListener (lns[i] is node i's): cutting one makes the partitions
// it leads unreachable while the others are read.
func opsStartKafkaN(t *testing.T, brokers int, partitions int32, topics []string, extra ...kfake.Opt) *opsKafka {
	t.Helper()
	var lns []*opsListener
	for range brokers {
		ln, err := newOpsListener()
		require.NoError(t, err)
		lns = append(lns, ln)
	}
	ln := lns[0]
	var next int
	opts := []kfake.Opt{
		kfake.NumBrokers(brokers),
		kfake.ListenFn(func(string, string) (net.Listener, error) {
			l := lns[next]
			next++
			return l, nil
		}),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": fmt.Sprint(8 << 20)}),
	}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(partitions, topics...))
	}
	c, err := kfake.NewCluster(append(opts, extra...)...)
	if err != nil {
		for _, l := range lns {
			_ = l.Close()
		}
		require.NoError(t, err)
	}
	k := &opsKafka{c: c, ln: ln, lns: lns}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() {
		k.cancel()
		k.mu.Lock()
		for _, tr := range k.trs {
			tr.CloseIdleConnections()
		}
		k.mu.Unlock()
		c.Close()
		for _, l := range lns {
			_ = l.Close()
		}
	})
	return k
}

// Addr is the broker address the daemon is given.
func (k *opsKafka) Addr() string { return k.ln.public }

// side returns a new transport that reaches each broker through its side
// port, which is never cut: the address the metadata names (a public
// port) is mapped to the same broker's side port, and any other to broker
// 0's. Each has its own metadata cache, so a new one sees topics and
// partitions created meanwhile.
func (k *opsKafka) side() *kafka.Transport {
	tr := &kafka.Transport{Context: k.ctx, TLS: k.ClientTLS, SASL: k.ClientSASL, Dial: func(ctx context.Context, _, addr string) (net.Conn, error) {
		side := k.ln.side.Addr().String()
		for _, l := range k.lns {
			if l.public == addr {
				side = l.side.Addr().String()
			}
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", side)
	}}
	k.mu.Lock()
	k.trs = append(k.trs, tr)
	k.mu.Unlock()
	return tr
}

// Writer returns a synchronous writer through the side port; the caller
// closes it. BatchBytes allows 8-MiB records.
func (k *opsKafka) Writer() *kafka.Writer {
	return &kafka.Writer{Addr: kafka.TCP(k.ln.side.Addr().String()), Transport: k.side(), Balancer: &kafka.Hash{},
		BatchSize: 2000, BatchBytes: 8 << 20, BatchTimeout: 2 * time.Millisecond, RequiredAcks: kafka.RequireOne}
}

// Admin returns a client for admin requests through the side port.
func (k *opsKafka) Admin() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(k.ln.side.Addr().String()), Transport: k.side(), Timeout: 10 * time.Second}
}

// AddPartitions grows a topic to count partitions through the Kafka API.
func (k *opsKafka) AddPartitions(t *testing.T, topic string, count int) {
	t.Helper()
	resp, err := k.Admin().CreatePartitions(context.Background(), &kafka.CreatePartitionsRequest{
		Topics: []kafka.TopicPartitionsConfig{{Name: topic, Count: int32(count)}}})
	require.NoError(t, err)
	for _, e := range resp.Errors {
		require.NoError(t, e)
	}
}

// --- traffic ---------------------------------------------------------------

// opsFeeder writes a simulator scenario into the broker: what lies in the
// past at once, the rest as the wall clock reaches it, so the tail is live
// traffic. It counts what it wrote, per topic.
type opsFeeder struct {
	truth simulate.GroundTruth
	done  chan error
	stop  context.CancelFunc

	mu      sync.Mutex
	written map[string]int64
	extra   int64 // records added by the mix function (garbage)
	caught  chan struct{}
}

// opsFeed describes a feed.
type opsFeed struct {
	Scenario string
	Seed     int64
	// Past is how much of the scenario lies before now; Live how much
	// follows in real time.
	Past, Live time.Duration
	// SinceOnset, when set, overrides Past so that the scenario's first
	// incident began this long before now, whatever its seeded jitter.
	SinceOnset time.Duration
	Rate       float64
	// Mix, when set, may add records to each batch before it is written
	// (garbage); it returns the records to write and how many it added.
	Mix func(batch []kafka.Message) ([]kafka.Message, int)
}

func opsStartFeeder(t *testing.T, k *opsKafka, f opsFeed) *opsFeeder {
	t.Helper()
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	if f.SinceOnset > 0 {
		// Deploy jitter and onsets depend on the seed, not on the start.
		probe, err := simulate.Plan(simulate.Config{Scenario: f.Scenario, Seed: f.Seed, Start: time.Now().Add(-3 * time.Hour).Truncate(time.Second), Duration: 3 * time.Hour, Rate: f.Rate}, wikis)
		require.NoError(t, err)
		require.NotEmpty(t, probe.Incidents, "scenario %s has no incident", f.Scenario)
		f.Past = probe.Incidents[0].Onset.Sub(probe.Start) + f.SinceOnset
	}
	start := time.Now().Add(-f.Past).Truncate(time.Second)
	cfg := simulate.Config{Scenario: f.Scenario, Seed: f.Seed, Start: start, Duration: f.Past + f.Live, Rate: f.Rate, BatchSize: 20}
	truth, err := simulate.Plan(cfg, wikis)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	fd := &opsFeeder{truth: truth, done: make(chan error, 1), stop: cancel, written: map[string]int64{}, caught: make(chan struct{})}
	w := k.Writer()
	go func() {
		defer func() { _ = w.Close() }()
		var msgs []kafka.Message
		caught := false
		write := func(ctx context.Context) error {
			if len(msgs) == 0 {
				return nil
			}
			added := 0
			if f.Mix != nil {
				msgs, added = f.Mix(msgs)
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				return fmt.Errorf("write %d records: %w", len(msgs), err)
			}
			fd.mu.Lock()
			for _, m := range msgs {
				fd.written[m.Topic]++
			}
			fd.extra += int64(added)
			fd.mu.Unlock()
			clear(msgs)
			msgs = msgs[:0]
			return nil
		}
		_, err := simulate.Run(ctx, cfg, wikis, func(ctx context.Context, batch []simulate.Record) error {
			if len(batch) == 0 {
				return nil
			}
			// The past goes in large writes; the live tail is paced to the
			// wall clock, one small batch at a time.
			if wait := time.Until(batch[len(batch)-1].Time); wait > 0 {
				if err := write(ctx); err != nil {
					return err
				}
				if !caught {
					caught = true
					close(fd.caught)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
			for _, r := range batch { // Run reuses the batch's buffers
				msgs = append(msgs, kafka.Message{Topic: r.Topic, Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value), Time: r.Time})
			}
			if caught || len(msgs) >= 2000 {
				return write(ctx)
			}
			return nil
		})
		if err == nil {
			err = write(ctx)
		}
		if !caught {
			close(fd.caught)
		}
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		fd.done <- err
	}()
	t.Cleanup(func() { _ = fd.Stop() })
	return fd
}

// Caught is closed once the past part of the scenario is written.
func (f *opsFeeder) Caught() <-chan struct{} { return f.caught }

// Wait waits for the scenario to end.
func (f *opsFeeder) Wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-f.done:
		f.done <- err
		require.NoError(t, err)
	case <-time.After(10 * time.Minute):
		t.Fatal("the feeder did not finish")
	}
}

// Stop ends the feed and returns its error.
func (f *opsFeeder) Stop() error {
	f.stop()
	err := <-f.done
	f.done <- err
	return err
}

// Written returns the records written, per topic and in all.
func (f *opsFeeder) Written() (map[string]int64, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, v := range f.written {
		n += v
	}
	return maps.Clone(f.written), n
}

// Extra returns how many records the Mix function added.
func (f *opsFeeder) Extra() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.extra
}

// --- configuration -----------------------------------------------------------

// opsConfig is the daemon's configuration file for a test.
type opsConfig struct {
	Brokers      string
	Topics       []string // default opsTopics
	TopicRecheck time.Duration
	// MaxPartitionStall is kafka.max_partition_stall; 0 keeps the default.
	MaxPartitionStall time.Duration
	ClusterExtra      string // YAML lines under the cluster (tls, sasl), indented by 4
	Extra             string // YAML appended at the top level
}

func (c opsConfig) YAML() string {
	topics := c.Topics
	if topics == nil {
		topics = opsTopics
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kafka:\n  max_wait: 100ms\n  topic_recheck: %s\n", model.Duration(max(c.TopicRecheck, time.Second)))
	if c.MaxPartitionStall > 0 {
		fmt.Fprintf(&b, "  max_partition_stall: %s\n", model.Duration(c.MaxPartitionStall))
	}
	fmt.Fprintf(&b, "  clusters:\n  - name: test\n    brokers: [%q]\n", c.Brokers)
	b.WriteString(c.ClusterExtra)
	b.WriteString("    topics:\n")
	for _, t := range topics {
		format := "mediawiki-log"
		if strings.Contains(t, "accesslog") {
			format = "httpd-accesslog"
		}
		fmt.Fprintf(&b, "    - {name: %q, format: %s}\n", t, format)
	}
	// The scenarios have 30 quiet minutes before their deploy; as in the
	// demo, ask for a little less so bucket alignment cannot fall short.
	b.WriteString("detect:\n  min_pre_period: 20m\n")
	b.WriteString(c.Extra)
	return b.String()
}

func opsWriteFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// --- the daemon, in-process ------------------------------------------------

// opsSyncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type opsSyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *opsSyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *opsSyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// opsDaemonOptions are what a test varies.
type opsDaemonOptions struct {
	ConfigFile    string
	WebConfigFile string
	Alertmanagers []string
	ResendDelay   time.Duration
	LogLevel      string // default info
	// User and Pass are the basic-auth credentials the test's requests
	// carry (the web config's users hold their bcrypt hashes).
	User, Pass string
	// Limits are the web flags beyond exporter-toolkit's.
	Limits webLimits
}

// opsDaemon is `detector run` in this process: runDaemon with a context a
// test cancels, as SIGTERM does through signal.NotifyContext in realMain.
type opsDaemon struct {
	URL    string // http(s)://127.0.0.1:port
	Logs   *opsSyncBuffer
	Stdout *opsSyncBuffer

	cancel  context.CancelFunc
	done    chan error
	client  *http.Client
	user    string
	pass    string
	stopped time.Duration
}

func opsStartDaemon(t *testing.T, o opsDaemonOptions) *opsDaemon {
	t.Helper()
	listen := []string{"127.0.0.1:0"}
	systemd := false
	webCfg := o.WebConfigFile
	lvl := promslog.NewLevel()
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	require.NoError(t, lvl.Set(o.LogLevel))
	d := &opsDaemon{Logs: &opsSyncBuffer{}, Stdout: &opsSyncBuffer{}, done: make(chan error, 1), user: o.User, pass: o.Pass,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	addrs := make(chan []net.Addr, 1)
	ro := runOptions{
		common: commonOptions{configFile: o.ConfigFile, logger: promslog.New(&promslog.Config{Writer: d.Logs, Level: lvl}),
			stdout: d.Stdout, stderr: d.Logs},
		alertmanagers: o.Alertmanagers, resendDelay: o.ResendDelay, enableLifecycle: true, limits: o.Limits,
		web:       &web.FlagConfig{WebListenAddresses: &listen, WebSystemdSocket: &systemd, WebConfigFile: &webCfg},
		listening: func(a []net.Addr) { addrs <- a },
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- runDaemon(ctx, ro) }()
	select {
	case a := <-addrs:
		scheme := "http"
		if webCfg != "" && strings.Contains(mustRead(t, webCfg), "tls_server_config") {
			scheme = "https"
			d.client.Transport = &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the test's own certificate
		}
		d.URL = scheme + "://" + a[0].String()
	case err := <-d.done:
		cancel()
		t.Fatalf("the daemon did not start: %v\nlogs:\n%s", err, d.Logs)
	}
	t.Cleanup(func() {
		if _, err := d.Stop(); err != nil {
			t.Logf("daemon stopped with: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon logs:\n%s", d.Logs)
		}
	})
	return d
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// Stop cancels the daemon's context (what SIGTERM does) and waits for
// runDaemon to return; it returns how long that took. Idempotent.
func (d *opsDaemon) Stop() (time.Duration, error) {
	if d.cancel == nil {
		return d.stopped, nil
	}
	start := time.Now()
	d.cancel()
	d.cancel = nil
	var err error
	select {
	case err = <-d.done:
	case <-time.After(30 * time.Second):
		err = errors.New("runDaemon did not return within 30 s of cancel")
	}
	d.stopped = time.Since(start)
	return d.stopped, err
}

// Done delivers runDaemon's result should it return by itself: a test that
// expects the daemon to keep running selects on it.
func (d *opsDaemon) Done() <-chan error { return d.done }

// --- HTTP and metrics, for both kinds of daemon -----------------------------

// opsHTTP talks to a daemon's web endpoints.
type opsHTTP struct {
	URL    string
	Client *http.Client
	User   string
	Pass   string
}

func (d *opsDaemon) HTTP() opsHTTP {
	return opsHTTP{URL: d.URL, Client: d.client, User: d.user, Pass: d.pass}
}

// Do sends a request and returns the status and body; err is a transport error.
func (h opsHTTP) Do(method, path, body string) (int, string, error) {
	req, err := http.NewRequest(method, h.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if h.User != "" {
		req.SetBasicAuth(h.User, h.Pass)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Get is Do("GET") that fails the test on a transport error.
func (h opsHTTP) Get(t *testing.T, path string) (int, string) {
	t.Helper()
	code, body, err := h.Do(http.MethodGet, path, "")
	require.NoError(t, err, "GET %s", path)
	return code, body
}

// Metrics scrapes /metrics.
func (h opsHTTP) Metrics(t *testing.T) opsMetrics {
	t.Helper()
	code, body := h.Get(t, "/metrics")
	require.Equal(t, http.StatusOK, code, body)
	return opsParseMetrics(t, body)
}

// Findings reads /api/v1/findings.
func (h opsHTTP) Findings(t *testing.T) []detect.Finding {
	t.Helper()
	code, body := h.Get(t, "/api/v1/findings")
	require.Equal(t, http.StatusOK, code, body)
	var fs []detect.Finding
	require.NoError(t, json.Unmarshal([]byte(body), &fs))
	return fs
}

// WaitReady polls /-/ready until it answers 200.
func (h opsHTTP) WaitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	var code int
	var body string
	require.Eventually(t, func() bool {
		var err error
		code, body, err = h.Do(http.MethodGet, "/-/ready", "")
		return err == nil && code == http.StatusOK
	}, timeout, 50*time.Millisecond, "not ready after %s: last answer %d %q", timeout, code, body)
}

// WaitFinding polls /api/v1/findings until one of kind is firing.
func (h opsHTTP) WaitFinding(t *testing.T, kind detect.Kind, timeout time.Duration) detect.Finding {
	t.Helper()
	var got detect.Finding
	require.Eventually(t, func() bool {
		for _, f := range h.Findings(t) {
			if f.Kind == kind && f.State == detect.StateFiring {
				got = f
				return true
			}
		}
		return false
	}, timeout, 200*time.Millisecond, "no firing %s finding within %s", kind, timeout)
	return got
}

// opsMetrics is one scrape.
type opsMetrics map[string]*dto.MetricFamily

func opsParseMetrics(t *testing.T, text string) opsMetrics {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	require.NoError(t, err)
	return fams
}

// Sum adds the values of every series of name whose labels include match.
func (m opsMetrics) Sum(name string, match ...string) float64 {
	f, ok := m[name]
	if !ok {
		return 0
	}
	sum := 0.0
	for _, s := range f.GetMetric() {
		if !opsLabelsMatch(s, match) {
			continue
		}
		switch {
		case s.Counter != nil:
			sum += s.GetCounter().GetValue()
		case s.Gauge != nil:
			sum += s.GetGauge().GetValue()
		case s.Untyped != nil:
			sum += s.GetUntyped().GetValue()
		}
	}
	return sum
}

// Has reports whether name has a series.
func (m opsMetrics) Has(name string) bool { _, ok := m[name]; return ok }

// By returns the value of every series of name by the value of label.
func (m opsMetrics) By(name, label string) map[string]float64 {
	out := map[string]float64{}
	f, ok := m[name]
	if !ok {
		return out
	}
	for _, s := range f.GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] += s.GetCounter().GetValue() + s.GetGauge().GetValue()
			}
		}
	}
	return out
}

func opsLabelsMatch(s *dto.Metric, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		found := false
		for _, l := range s.GetLabel() {
			if l.GetName() == match[i] && l.GetValue() == match[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// --- the daemon as a child process -------------------------------------------

// The child: the test binary re-executed runs only TestOpsHelperDaemon,
// which runs realMain with the arguments in opsHelperArgs and exits. Real
// signals reach it; SIGKILL ends it with no chance to clean up.
const (
	opsHelperEnv  = "DETECTOR_OPS_HELPER"
	opsHelperArgs = "DETECTOR_OPS_HELPER_ARGS"
)

func TestOpsHelperDaemon(t *testing.T) {
	if os.Getenv(opsHelperEnv) != "1" {
		return // not the child
	}
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(opsHelperArgs)), &args); err != nil {
		fmt.Fprintf(os.Stderr, "helper args: %v\n", err)
		os.Exit(3)
	}
	os.Exit(realMain(args, os.Stdout, os.Stderr))
}

// opsProcess is a daemon running as a child process.
type opsProcess struct {
	URL  string
	Logs *opsSyncBuffer
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's, once done is closed
}

// opsStartProcess starts `detector run` with args in a child process on a
// fresh port.
func opsStartProcess(t *testing.T, args ...string) *opsProcess {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	all := append([]string{"run", "--web.listen-address=" + addr, "--web.enable-lifecycle"}, args...)
	js, err := json.Marshal(all)
	require.NoError(t, err)
	p := &opsProcess{URL: "http://" + addr, Logs: &opsSyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestOpsHelperDaemon$", "-test.count=1")
	p.cmd.Env = append(os.Environ(), opsHelperEnv+"=1", opsHelperArgs+"="+string(js))
	p.cmd.Stdout = p.Logs
	p.cmd.Stderr = p.Logs
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("child daemon (pid %d) output:\n%s", p.cmd.Process.Pid, p.Logs)
		}
	})
	return p
}

func (p *opsProcess) HTTP() opsHTTP {
	return opsHTTP{URL: p.URL, Client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
}

// Signal sends a real signal to the child.
func (p *opsProcess) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for the process to exit and returns its exit code.
func (p *opsProcess) Wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("child daemon did not exit within %s", timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	require.NoError(t, p.err)
	return 0
}

// Kill sends SIGKILL and waits for the process; idempotent.
func (p *opsProcess) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}
