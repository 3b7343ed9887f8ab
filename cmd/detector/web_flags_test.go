package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/wikimedia/pretrain-detector/api"
	"github.com/wikimedia/pretrain-detector/config"
)

// TestAlertmanagerURLWithCredentialsRefused: a password in --alertmanager.url
// stops the start with one line that names where credentials go, and does
// not repeat the password.
func TestAlertmanagerURLWithCredentialsRefused(t *testing.T) {
	var out, errOut bytes.Buffer
	code := realMain([]string{"run", "--web.listen-address=127.0.0.1:0", "--alertmanager.url=http://am.example:9093",
		"--alertmanager.url=http://u:secret-Pw9@am2.example:9093"}, &out, &errOut)
	require.Equal(t, 1, code)
	msg := errOut.String()
	require.Equal(t, 1, strings.Count(msg, "\n"), "one line: %q", msg)
	require.Contains(t, msg, "alerting.alertmanagers[]")
	require.Contains(t, msg, "basic_auth.password_file")
	require.Contains(t, msg, "http://u:xxxxx@am2.example:9093")
	require.NotContains(t, msg+out.String(), "secret-Pw9")
}

// slowServer serves the daemon's handler through newWebServer and
// limitListener with the given limits, on 127.0.0.1.
func slowServer(t *testing.T, l webLimits) string {
	t.Helper()
	h := api.NewHandler(api.Options{AddDeploy: func(api.DeployMarker) error { return nil }})
	srv := newWebServer(h, l, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(limitListener(ln, l)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestReadTimeoutCutsSlowBody: a client that sends its headers and then
// trickles the body a byte at a time is cut off at --web.read-timeout,
// long before it finishes.
func TestReadTimeoutCutsSlowBody(t *testing.T) {
	const readTimeout = 500 * time.Millisecond
	addr := slowServer(t, webLimits{readTimeout: readTimeout, maxConnections: 10})
	// The server's read deadline starts when it accepts the connection,
	// which can be before Dial returns: the clock starts before Dial.
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	const bodyLen = 200 // at one byte per 50 ms: 10 s to send
	_, err = fmt.Fprintf(c, "POST /api/v1/deploys HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, bodyLen)
	require.NoError(t, err)
	closed := make(chan time.Duration, 1)
	go func() {
		_, _ = io.Copy(io.Discard, c) // returns when the server closes the connection
		closed <- time.Since(start)
	}()
	sent := 0
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var cutAfter time.Duration
loop:
	for sent < bodyLen {
		select {
		case cutAfter = <-closed:
			break loop
		case <-tick.C:
			if _, err := c.Write([]byte{' '}); err != nil {
				cutAfter = time.Since(start)
				break loop
			}
			sent++
		}
	}
	require.Less(t, sent, bodyLen, "the trickle was cut off before it ended")
	require.GreaterOrEqual(t, cutAfter, readTimeout)
	require.Less(t, cutAfter, readTimeout+3*time.Second, "cut off near the read timeout")
	t.Logf("cut off after %s, %d of %d body bytes sent", cutAfter.Round(time.Millisecond), sent, bodyLen)
}

// TestMaxConnections: with --web.max-connections=2 and two connections
// held open, a third client waits until one closes.
func TestMaxConnections(t *testing.T) {
	addr := slowServer(t, webLimits{readTimeout: 10 * time.Second, maxConnections: 2})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		held = append(held, c)
		// A started request keeps its connection busy.
		_, err = fmt.Fprintf(c, "GET /-/healthy HTTP/1.1\r\nHost: %s\r\n", addr)
		require.NoError(t, err)
	}
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	get := func(timeout time.Duration) error {
		client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get("http://" + addr + "/-/healthy")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	require.Error(t, get(500*time.Millisecond), "a third connection is not served while two are open")
	require.NoError(t, held[0].Close())
	require.NoError(t, get(5*time.Second), "served once one closed")
}

func TestConfigChanges(t *testing.T) {
	old := config.Default()
	cur := config.Default()
	live, restart := config.Changes(old, cur)
	require.Empty(t, live)
	require.Empty(t, restart)
	cur.Deploys = []config.DeployMarker{{Scope: "pretrain", Version: "v", At: time.Now()}}
	cur.Detect.Alpha = 0.01
	cur.Kafka.MaxWait *= 2
	live, restart = config.Changes(old, cur)
	require.Equal(t, []string{"deploys"}, live)
	require.Equal(t, []string{"kafka", "detect"}, restart)
}

// TestDeployMarkersAcrossDaemons: two daemons on one Kafka cluster, the
// admin API on: a marker POSTed to one shows in both, and in a third
// started afterwards (a restart). Through the daemon's own server, a
// text/plain body is refused with 415 and a marker dated ahead with 400.
func TestDeployMarkersAcrossDaemons(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, append(prodTopics, config.DefaultMarkerTopic)...))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	dir := t.TempDir()
	cfgFile := writeFile(t, dir, "detector.yml", "kafka:\n  max_wait: 100ms\n  topic_recheck: 1s\n")
	start := func() (*testDaemon, string) {
		d := startDaemon(t, daemonOptions{configFile: cfgFile, brokers: cluster.ListenAddrs(), limits: webLimits{enableAdminAPI: true}})
		base := "http://" + d.addr
		require.Eventually(t, func() bool {
			code, _, err := webFetch(t, http.DefaultClient, "GET", base+"/-/ready", "")
			return err == nil && code == 200
		}, 30*time.Second, 50*time.Millisecond)
		return d, base
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	_, a := start()
	db, b := start()

	at := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	body := `{"scope":"pretrain","version":"1.48.0-alpha","at":"` + at.Format(time.RFC3339) + `"}`
	code, resp := webGet(t, client, "POST", a+"/api/v1/deploys", body, "Content-Type", "text/plain")
	require.Equal(t, http.StatusUnsupportedMediaType, code, resp)
	ahead := `{"scope":"train","version":"1.99.0-wmf.1","at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`
	code, resp = webGet(t, client, "POST", a+"/api/v1/deploys", ahead, "Content-Type", "application/json")
	require.Equal(t, http.StatusBadRequest, code, resp)
	require.Contains(t, resp, "field at")
	code, resp = webGet(t, client, "POST", a+"/api/v1/deploys", body, "Content-Type", "application/json")
	require.Equal(t, http.StatusAccepted, code, resp)

	want := statusDeploy{Scope: "pretrain", Version: "1.48.0-alpha", At: at.Format(time.RFC3339), Source: "api"}
	for _, base := range []string{a, b} {
		require.Eventually(t, func() bool {
			return contains(deploysInStatus(t, client, base, nil), want)
		}, 20*time.Second, 50*time.Millisecond, "the marker reaches %s", base)
	}
	require.NoError(t, db.stop(t))
	_, c := start()
	require.Contains(t, deploysInStatus(t, client, c, nil), want, "a restarted daemon has it once ready")
	for _, base := range []string{a, c} {
		n := 0
		for _, d := range deploysInStatus(t, client, base, nil) {
			if d.Source == "api" {
				n++
			}
		}
		require.Equal(t, 1, n, "only the accepted marker, once")
	}
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// The child of TestCredentialsNeverOnCommandLine: the test binary
// re-executed, with the detector's arguments after "--" so that they are
// the process's real command line, as /debug/pprof/cmdline shows it.
const webHelperEnv = "DETECTOR_WEB_HELPER"

func TestWebHelperDaemon(t *testing.T) {
	if os.Getenv(webHelperEnv) != "1" {
		return // not the child
	}
	os.Exit(realMain(flag.Args(), os.Stdout, os.Stderr))
}

// TestCredentialsNeverOnCommandLine runs `detector run` as a process whose
// command line is the detector's own, with Alertmanager credentials in the
// config file: the password is neither on /debug/pprof/cmdline (which shows
// that command line) nor in /metrics, /api/v1/status or the log.
func TestCredentialsNeverOnCommandLine(t *testing.T) {
	const amPass = "am-pw-Hc5tN1wQ"
	cluster := newKafka(t)
	dir := t.TempDir()
	writeFile(t, dir, "am-password", amPass+"\n")
	cfgFile := writeFile(t, dir, "detector.yml", "kafka:\n  max_wait: 100ms\nalerting:\n  alertmanagers:\n  - urls: [http://127.0.0.1:1]\n"+
		"    basic_auth: {username: detector, password_file: am-password}\n")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	args := []string{"--config.file=" + cfgFile, "--log.level=debug", "run", "--web.listen-address=" + addr,
		"--kafka.brokers=" + strings.Join(cluster.ListenAddrs(), ",")}
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestWebHelperDaemon$", "-test.count=1", "--"}, args...)...)
	cmd.Env = append(os.Environ(), webHelperEnv+"=1")
	var logs opsSyncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("child output:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	require.Eventually(t, func() bool {
		code, _, err := webFetch(t, client, "GET", base+"/-/ready", "")
		return err == nil && code == 200
	}, 30*time.Second, 50*time.Millisecond)
	get := func(path string) string {
		code, body := webGet(t, client, "GET", base+path, "")
		require.Equal(t, 200, code, path)
		return body
	}
	cmdline := get("/debug/pprof/cmdline")
	require.Contains(t, cmdline, "--config.file="+cfgFile, "the real command line")
	status := get("/api/v1/status")
	require.Contains(t, status, `"basic_auth":true`)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(status), &st))
	require.Contains(t, st, "security")
	metrics := get("/metrics")
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	require.NoError(t, cmd.Wait())
	for where, text := range map[string]string{"/debug/pprof/cmdline": cmdline, "/api/v1/status": status, "/metrics": metrics, "log": logs.String()} {
		require.NotContains(t, text, amPass, where)
	}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	lines := 0
	for sc.Scan() {
		lines++
	}
	require.Positive(t, lines, "the child logged (at debug level)")
}

// TestSecurityWarningsAndStatus: insecure_skip_verify and an allowed SASL
// PLAIN without TLS are logged as warnings at start and listed in the
// status, which names the Alertmanager credentials' kind but never them.
func TestSecurityWarningsAndStatus(t *testing.T) {
	cfg, err := config.Parse([]byte(`kafka:
  clusters:
  - name: a
    brokers: [h:1]
    tls: {enabled: true, insecure_skip_verify: true}
    topics: [{name: t, format: webrequest}]
  - name: b
    brokers: [h:2]
    sasl: {mechanism: PLAIN, username: u, password_file: p, allow_plaintext: true}
    topics: [{name: u, format: webrequest}]
alerting:
  alertmanagers:
  - urls: [https://am:9093]
    basic_auth: {username: detector, password: inline-Secret-7}
`))
	require.NoError(t, err)
	var logs bytes.Buffer
	logSecurityWarnings(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	require.Contains(t, logs.String(), `level=WARN msg="Kafka TLS does not verify the brokers' certificates (tls.insecure_skip_verify)`)
	require.Contains(t, logs.String(), "cluster=a")
	require.Contains(t, logs.String(), `level=WARN msg="Kafka SASL PLAIN without TLS (sasl.allow_plaintext)`)
	require.Contains(t, logs.String(), "cluster=b")

	st := api.SecurityStatus(cfg, securityOf(webLimits{enableAdminAPI: true}, []string{"http://am2:9093"}))
	b, err := json.Marshal(st)
	require.NoError(t, err)
	js := string(b)
	require.Contains(t, js, `"kafka_insecure_skip_verify":["a"]`)
	require.Contains(t, js, `"kafka_sasl_plaintext":["b"]`)
	require.Contains(t, js, `"admin_api":true`)
	require.Contains(t, js, `"web_read_timeout":"30s"`)
	require.Contains(t, js, `"urls":["https://am:9093"],"basic_auth":true`)
	require.Contains(t, js, `"urls":["http://am2:9093"]`)
	require.Contains(t, js, `"deploy_markers":{"cluster":"a","topic":"pretrain-detector.deploy-markers"}`)
	require.NotContains(t, js, "inline-Secret-7")
}

func TestReplayTargets(t *testing.T) {
	cfg, err := config.Parse([]byte("alerting:\n  alertmanagers:\n  - urls: [https://am1:9093/, https://am2:9093]\n    timeout: 3s\n    basic_auth: {username: u, password_file: /p}\n"))
	require.NoError(t, err)
	plain, sets := replayTargets(cfg, []string{"https://am1:9093", "http://other:9093"})
	require.Equal(t, []string{"http://other:9093"}, plain)
	require.Len(t, sets, 1)
	require.Equal(t, []string{"https://am1:9093"}, sets[0].URLs, "only the URL asked for")
	require.Equal(t, "/p", sets[0].HTTPConfig.BasicAuth.PasswordFile)
	require.Equal(t, 3*time.Second, sets[0].Timeout)
}

// TestThousandMarkersKeepEventDeploys feeds traffic (whose versions and
// rollouts make the event-derived deploy timeline), then POSTs 1,000
// markers through the daemon's deploys API, each dated after every event:
// all of them arrive through the marker topic, and every deploy learned
// from the events is still in the timeline.
func TestThousandMarkersKeepEventDeploys(t *testing.T) {
	k := opsStartKafka(t, 1, append(slices.Clone(opsTopics), config.DefaultMarkerTopic))
	f := opsStartFeeder(t, k, opsFeed{Scenario: "quiet", Seed: 3, Past: 10 * time.Minute, Rate: 20})
	f.Wait(t)
	cfg := opsWriteFile(t, t.TempDir(), "detector.yml", opsConfig{Brokers: k.Addr()}.YAML())
	d := opsStartDaemon(t, opsDaemonOptions{ConfigFile: cfg, Limits: webLimits{enableAdminAPI: true}})
	h := d.HTTP()
	h.WaitReady(t, 30*time.Second)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	derived := func() []statusDeploy {
		var out []statusDeploy
		for _, dp := range deploysInStatus(t, client, d.URL, nil) {
			if dp.Source == "mwversion" || dp.Source == "rollout" {
				out = append(out, dp)
			}
		}
		return out
	}
	var before []statusDeploy
	require.Eventually(t, func() bool { before = derived(); return len(before) > 0 }, 20*time.Second, 50*time.Millisecond,
		"the events made a deploy timeline")

	now := time.Now().UTC()
	for i := range 1000 {
		body := fmt.Sprintf(`{"scope":"train","group":"group%d","version":"1.99.0-wmf.%d","at":%q}`, i%3, i,
			now.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano))
		code, resp := webGet(t, client, "POST", d.URL+"/api/v1/deploys", body, "Content-Type", "application/json")
		require.Equal(t, http.StatusAccepted, code, resp)
	}
	require.Eventually(t, func() bool {
		n := 0
		for _, dp := range deploysInStatus(t, client, d.URL, nil) {
			if dp.Source == "api" {
				n++
			}
		}
		return n == 1000
	}, 30*time.Second, 100*time.Millisecond, "the markers arrive through the topic")
	require.Equal(t, before, derived(), "no event-derived deploy was evicted")
	t.Logf("%d event-derived deploys kept beside 1000 markers", len(before))
}
