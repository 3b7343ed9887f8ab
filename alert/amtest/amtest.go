// Package amtest runs a real Alertmanager for tests, with a webhook receiver
// that records what it notifies, so tests can check alerts end to end: what
// the detector posts, what Alertmanager accepts, what a receiver gets.
//
// The alertmanager binary is looked up in $PATH, then in $(go env GOPATH)/bin
// (install it with `go install
// github.com/prometheus/alertmanager/cmd/alertmanager@v0.31.1`). Without it
// tests are skipped, unless DETECTOR_REQUIRE_ALERTMANAGER=1 (as in CI), when
// they fail.
package amtest

// This file is the whole test helper: starting a real Alertmanager binary,
// waiting for it, and reading back what it received. It is one file
// because tests use it as one thing.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns a missing alertmanager
// binary from a skip into a failure.
const RequireEnv = "DETECTOR_REQUIRE_ALERTMANAGER"

const (
	binaryName   = "alertmanager"
	readyTimeout = 20 * time.Second
	pollInterval = 50 * time.Millisecond
	stopTimeout  = 10 * time.Second
)

// Binary returns the path of the alertmanager binary, skipping the test when
// there is none, or failing it when RequireEnv is "1".
func Binary(t testing.TB) string {
	t.Helper()
	return Tool(t, binaryName, RequireEnv, "go install github.com/prometheus/alertmanager/cmd/alertmanager@v0.31.1")
}

// Tool returns the path of a tool binary a test runs (alertmanager, amtool,
// promtool): from $PATH, else from $GOBIN or $GOPATH/bin, where `go install`
// puts it. Without it the test is skipped, or fails when the environment
// variable requireEnv is "1" (CI sets it, having installed the tools);
// install says how to get it.
func Tool(t testing.TB, name, requireEnv, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	var tried []string
	for _, v := range []string{"GOBIN", "GOPATH"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			continue
		}
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			if dir == "" {
				continue
			}
			if v == "GOPATH" {
				dir = filepath.Join(dir, "bin")
			}
			p := filepath.Join(dir, name)
			tried = append(tried, p)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	msg := fmt.Sprintf("no %s binary in $PATH or %v; install it with `%s`", name, tried, install)
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("%s (required: %s=1)", msg, requireEnv)
	}
	t.Skip(msg)
	return ""
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago: for an Alertmanager started later than the code that talks to it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	return addr
}

// Options configures an Alertmanager.
type Options struct {
	// WebhookURL is where the single receiver posts notifications.
	WebhookURL string
	// Addr is the listen address; default FreeAddr.
	Addr string
	// GroupWait (default 0s), GroupInterval (default 1s) and RepeatInterval
	// (default 1h) are the route's timers, short so tests are quick.
	GroupWait, GroupInterval, RepeatInterval time.Duration
	// GroupBy is the route's group_by; default ["..."], one group per
	// alert, so each alert's notifications are its own.
	GroupBy []string
	// ConfigFile, when set, is the Alertmanager configuration to run
	// instead of the generated one (WebhookURL and the route timers are then
	// unused): for tests of a real routing tree.
	ConfigFile string
	// WebConfigFile is passed as --web.config.file (exporter-toolkit: TLS,
	// basic auth); empty: none. The readiness probe then needs ProbeUser and
	// ProbePass.
	WebConfigFile        string
	ProbeUser, ProbePass string
}

// Alertmanager is a running alertmanager process.
type Alertmanager struct {
	// URL is the base URL, http://127.0.0.1:port.
	URL string
	// Addr is the listen address.
	Addr string

	t      testing.TB
	bin    string
	dir    string
	config string
	log    string
	web    string
	user   string
	pass   string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
}

// Start writes a configuration, starts alertmanager on 127.0.0.1 with
// clustering off and storage in a temporary directory, and waits until it is
// ready. It is stopped in t.Cleanup; its log is printed if the test failed.
func Start(t testing.TB, o Options) *Alertmanager {
	t.Helper()
	bin := Binary(t)
	if o.Addr == "" {
		o.Addr = FreeAddr(t)
	}
	if o.GroupInterval == 0 {
		o.GroupInterval = time.Second
	}
	if o.RepeatInterval == 0 {
		o.RepeatInterval = time.Hour
	}
	if len(o.GroupBy) == 0 {
		o.GroupBy = []string{"..."}
	}
	dir := t.TempDir()
	a := &Alertmanager{
		URL:    "http://" + o.Addr,
		Addr:   o.Addr,
		t:      t,
		bin:    bin,
		dir:    dir,
		config: filepath.Join(dir, "alertmanager.yml"),
		log:    filepath.Join(dir, "alertmanager.log"),
		web:    o.WebConfigFile,
		user:   o.ProbeUser,
		pass:   o.ProbePass,
	}
	cfg := []byte(configYAML(o))
	if o.ConfigFile != "" {
		var err error
		if cfg, err = os.ReadFile(o.ConfigFile); err != nil {
			t.Fatalf("read alertmanager config: %v", err)
		}
	}
	if err := os.WriteFile(a.config, cfg, 0o600); err != nil {
		t.Fatalf("write alertmanager config: %v", err)
	}
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(a.log); err == nil {
				t.Logf("alertmanager log:\n%s", b)
			}
		}
	})
	a.start()
	return a
}

// StartAlertmanager starts an Alertmanager notifying webhookURL and returns
// its base URL and a function that stops it (also called in t.Cleanup).
func StartAlertmanager(t testing.TB, webhookURL string) (baseURL string, stop func()) {
	t.Helper()
	a := Start(t, Options{WebhookURL: webhookURL})
	return a.URL, a.Stop
}

// configYAML is the configuration: one route, one webhook receiver that
// also gets resolved notifications.
func configYAML(o Options) string {
	groupBy, _ := json.Marshal(o.GroupBy) // a JSON list is a YAML flow sequence
	url, _ := json.Marshal(o.WebhookURL)
	return fmt.Sprintf(`route:
  receiver: hook
  group_by: %s
  group_wait: %s
  group_interval: %s
  repeat_interval: %s
receivers:
  - name: hook
    webhook_configs:
      - url: %s
        send_resolved: true
`, groupBy, o.GroupWait, o.GroupInterval, o.RepeatInterval, url)
}

func (a *Alertmanager) start() {
	a.t.Helper()
	logf, err := os.OpenFile(a.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		a.t.Fatalf("open alertmanager log: %v", err)
	}
	// An *os.File for output: exec then needs no copying goroutines.
	args := []string{
		"--config.file=" + a.config,
		"--storage.path=" + filepath.Join(a.dir, "data"),
		"--web.listen-address=" + a.Addr,
		"--cluster.listen-address=", // no clustering: no gossip port, no peers
		"--log.level=debug",
	}
	if a.web != "" {
		args = append(args, "--web.config.file="+a.web)
	}
	cmd := exec.Command(a.bin, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	err = cmd.Start()
	if cerr := logf.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		a.t.Fatalf("start alertmanager: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // killed on Stop: the exit status says nothing
		close(done)
	}()
	a.mu.Lock()
	a.cmd, a.done = cmd, done
	a.mu.Unlock()
	if err := a.waitReady(done); err != nil {
		a.t.Fatalf("alertmanager at %s: %v", a.URL, err)
	}
}

// waitReady polls /-/ready until it answers 200, the process exits, or the
// timeout passes.
func (a *Alertmanager) waitReady(done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+"/-/ready", nil)
		if err != nil {
			return fmt.Errorf("build readiness request: %w", err)
		}
		if a.user != "" {
			req.SetBasicAuth(a.user, a.pass)
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return errors.New("exited before it was ready (see its log)")
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %w", readyTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}

// Stop kills the process and waits for it. It is idempotent.
func (a *Alertmanager) Stop() {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill() // fails only if it already exited, which is fine
	select {
	case <-done:
	case <-time.After(stopTimeout):
		a.t.Errorf("alertmanager pid %d did not exit within %s of SIGKILL", cmd.Process.Pid, stopTimeout)
	}
}

// Restart stops the process and starts it again on the same address with
// the same configuration and storage.
func (a *Alertmanager) Restart() {
	a.t.Helper()
	a.Stop()
	a.start()
}

// Alert is one alert in a webhook notification (Alertmanager's
// template.Alert).
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Message is a webhook notification (Alertmanager's notify/webhook.Message).
type Message struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   uint64            `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []Alert           `json:"alerts"`
}

// Webhook is a webhook receiver that records every notification.
type Webhook struct {
	// URL is where Alertmanager should post.
	URL string

	srv     *httptest.Server
	mu      sync.Mutex
	msgs    []Message
	bad     []string
	changed chan struct{} // cap 1: a notification arrived
}

// NewWebhook starts a receiver, closed in t.Cleanup.
func NewWebhook(t testing.TB) *Webhook {
	t.Helper()
	w := &Webhook{changed: make(chan struct{}, 1)}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	w.URL = w.srv.URL + "/alerts"
	t.Cleanup(w.srv.Close)
	return w
}

func (w *Webhook) serve(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var m Message
	if err == nil {
		err = json.NewDecoder(bytes.NewReader(body)).Decode(&m)
	}
	w.mu.Lock()
	if err != nil {
		w.bad = append(w.bad, fmt.Sprintf("%s %s: %v", r.Method, r.URL.Path, err))
	} else {
		w.msgs = append(w.msgs, m)
	}
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
	}
}

// Messages returns the notifications received so far.
func (w *Webhook) Messages() []Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Message(nil), w.msgs...)
}

// Alerts returns every alert of every notification received so far, in
// order of arrival.
func (w *Webhook) Alerts() []Alert {
	var out []Alert
	for _, m := range w.Messages() {
		out = append(out, m.Alerts...)
	}
	return out
}

// WaitFor waits until a received alert satisfies match and returns the
// first that does; it fails the test after timeout, listing what arrived.
func (w *Webhook) WaitFor(t testing.TB, timeout time.Duration, match func(Alert) bool) Alert {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		for _, a := range w.Alerts() {
			if match(a) {
				return a
			}
		}
		select {
		case <-w.changed:
		case <-deadline.C:
			w.mu.Lock()
			bad := append([]string(nil), w.bad...)
			w.mu.Unlock()
			got, _ := json.MarshalIndent(w.Messages(), "", "  ")
			t.Fatalf("no matching alert within %s; undecodable posts: %v; received: %s", timeout, bad, got)
			return Alert{}
		}
	}
}
