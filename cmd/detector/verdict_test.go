package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/ui"
	verdicts "github.com/wikimedia/pretrain-detector/verdict"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// verdictServer serves the real page and deploy API (package ui) on
// 127.0.0.1:0 over a real window holding 110 minutes of traffic, with
// deploys of every verdict: a busy Pretrain cohort, so that a closed quiet
// window can pass.
type verdictServer struct {
	url string
	mu  sync.Mutex
	fs  []detect.Finding
}

func (s *verdictServer) findings() []detect.Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]detect.Finding(nil), s.fs...)
}

func (s *verdictServer) add(f detect.Finding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fs = append(s.fs, f)
}

var (
	vt0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	// passes: a closed, quiet window; early: five minutes of data before
	// it; failed: a train deploy a train-regression blames; open: its
	// window is still open.
	passes = verdicts.Deploy{Scope: "pretrain", Version: "mw-pretrain-main-aaaa", At: vt0.Add(40 * time.Minute), Source: "rollout"}
	early  = verdicts.Deploy{Scope: "pretrain", Version: "build 1/early", At: vt0.Add(5 * time.Minute), Source: "api"}
	failed = verdicts.Deploy{Scope: "train", Group: "group1", Version: "1.47.0-wmf.17", At: vt0.Add(30 * time.Minute), Source: "mwversion"}
	open   = verdicts.Deploy{Scope: "train", Group: "group0", Version: "1.47.0-wmf.18", At: vt0.Add(100 * time.Minute), Source: "mwversion"}
)

func startVerdictServer(t *testing.T) *verdictServer {
	t.Helper()
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	store, err := window.New(window.Config{Bucket: 10 * time.Second, Length: 2 * time.Hour, Lateness: 30 * time.Second,
		CacheBytes: 32 << 20, CatalogueEntries: 1000, CatalogueBytes: 1 << 20}, wikis, event.NewInterner(), event.NewInterner(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, store.Close()) })
	w := store.NewWriter()
	add := func(at time.Time, id wikimap.ID, sc event.Scope, n int, kind event.Kind) {
		for i := range n {
			ev := event.Event{Time: at.Add(time.Duration(i) * 100 * time.Millisecond).UnixNano(), Kind: kind, Wiki: id, Scope: sc, Status: 200}
			var d *event.Detail
			if kind == event.KindError {
				ev.Fingerprint = 9
				d = &event.Detail{Message: []byte("m"), ReqID: []byte(fmt.Sprint(i))}
			}
			w.Add(&ev, d)
		}
	}
	testwiki, enwiki := wikis.ByNameString("testwiki"), wikis.ByNameString("enwiki")
	for m := range 111 {
		at := vt0.Add(time.Duration(m) * time.Minute)
		add(at, testwiki, event.ScopePretrain, 120, event.KindRequest)
		add(at, testwiki, event.ScopePretrain, 12, event.KindError)
		add(at, enwiki, event.ScopeTrain, 400, event.KindRequest)
		add(at, enwiki, event.ScopeTrain, 40, event.KindError)
	}
	w.Flush()
	store.Sync()

	s := &verdictServer{}
	u, err := ui.New(ui.Options{
		Findings: s.findings,
		Deploys:  func() []verdicts.Deploy { return []verdicts.Deploy{passes, early, failed, open} },
		Source:   verdicts.NewWindowSource(store, wikis, []string{"testwiki"}),
		Ledger:   verdicts.NewLedger(verdicts.Config{Alpha: 1e-3, Margin: 1.5, Attribution: time.Hour, MinPrePeriod: 30 * time.Minute}),
	})
	require.NoError(t, err)
	s.add(detect.Finding{ID: "t1", Kind: detect.KindTrainRegression, Severity: "warning", State: detect.StateFiring,
		StartedAt: failed.At.Add(5 * time.Minute), DetectedAt: failed.At.Add(7 * time.Minute),
		Deploy: &detect.Deploy{Scope: "train", Group: "group1", Version: failed.Version, At: failed.At}})
	mux := http.NewServeMux()
	u.Register(mux)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	s.url = "http://" + l.Addr().String()
	return s
}

func TestVerdictExitCodes(t *testing.T) {
	s := startVerdictServer(t)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"pass", []string{"--version=" + passes.Version}, 0, "pass: pretrain deploy mw-pretrain-main-aaaa at 2026-11-24T12:40:00Z: no finding blamed it", ""},
		{"fail", []string{"--version=" + failed.Version}, 1, "fail: train group1 deploy 1.47.0-wmf.17", ""},
		{"fail, by group", []string{"--version=" + failed.Version, "--group=group1"}, 1, "/findings/t1", ""},
		{"insufficient evidence, a version to escape", []string{"--version=" + early.Version}, 2, "only 5m0s of data before the deploy", ""},
		{"pending when the wait ends", []string{"--version=" + open.Version, "--wait=300ms", "--interval=100ms"}, 3, "pending:", "still pending after 300ms"},
		{"unknown version", []string{"--version=nope"}, 3, "", `no deploy of version \"nope\"`},
		{"unknown group", []string{"--version=" + failed.Version, "--group=group2"}, 3, "", "group2"},
		{"no version", nil, 3, "", "required flag(s) '--version'"},
		{"bad url", []string{"--version=x", "--url=localhost:9797"}, 3, "", "--url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"verdict", "--url=" + s.url}, tc.args...)
			if tc.name == "bad url" {
				args = append([]string{"verdict"}, tc.args...)
			}
			code, stdout, stderr := runMain(t, args...)
			require.Equal(t, tc.code, code, "stdout: %s\nstderr: %s", stdout, stderr)
			require.Contains(t, stdout, tc.stdout)
			require.Contains(t, strings.ReplaceAll(stderr, `"`, `\"`), tc.stderr)
		})
	}

	t.Run("json", func(t *testing.T) {
		code, stdout, stderr := runMain(t, "verdict", "--url="+s.url, "--version="+failed.Version, "--output=json")
		require.Equal(t, 1, code, stderr)
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &got))
		require.Equal(t, "fail", got["verdict"])
		require.Equal(t, "train", got["scope"])
		require.Equal(t, "group1", got["group"])
		require.Equal(t, []any{"t1"}, got["findings"])
		for _, k := range []string{"version", "at", "evidence"} {
			require.Contains(t, got, k)
		}
	})

	// --wait polls: a finding that fires while it waits turns the pending
	// verdict into fail.
	t.Run("wait until not pending", func(t *testing.T) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(300 * time.Millisecond)
			s.add(detect.Finding{ID: "t2", Kind: detect.KindTrainRegression, Severity: "warning", State: detect.StateFiring,
				StartedAt: open.At, DetectedAt: open.At.Add(time.Minute),
				Deploy: &detect.Deploy{Scope: "train", Group: "group0", Version: open.Version, At: open.At}})
		}()
		start := time.Now()
		code, stdout, stderr := runMain(t, "verdict", "--url="+s.url, "--version="+open.Version, "--wait=1m", "--interval=100ms")
		<-done
		require.Equal(t, 1, code, "stdout: %s\nstderr: %s", stdout, stderr)
		require.Contains(t, stdout, "t2")
		require.Less(t, time.Since(start), 30*time.Second)
	})

	t.Run("the API escapes versions", func(t *testing.T) {
		resp, err := http.Get(s.url + "/api/v1/deploys/" + url.PathEscape(early.Version))
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	})
}

// TestVerdictAgainstTheDaemon asks a running `detector run` (empty topics,
// a deploy marker from the configuration): the page is served with its
// policy, and with no event yet the marker's verdict is pending, which
// `detector verdict` reports as exit 3 when its wait ends.
func TestVerdictAgainstTheDaemon(t *testing.T) {
	dir := t.TempDir()
	cluster := newKafka(t)
	at := time.Now().Add(-10 * time.Minute).UTC().Format(time.RFC3339)
	cfgFile := writeFile(t, dir, "detector.yml", "kafka:\n  max_wait: 100ms\ndeploys:\n  - scope: pretrain\n    version: build-7\n    at: "+at+"\n")
	d := startDaemon(t, daemonOptions{configFile: cfgFile, brokers: cluster.ListenAddrs()})
	base := "http://" + d.addr
	c := &http.Client{Timeout: 10 * time.Second}

	code, body := webGet(t, c, "GET", base+"/", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "<h1><a href=\"/\">Pretrain regression detector</a></h1>")
	code, body = webGet(t, c, "GET", base+"/api/v1/deploys", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"version":"build-7"`)
	require.Contains(t, body, `"verdict":"pending"`)

	exit, stdout, stderr := runMain(t, "verdict", "--url="+base, "--version=build-7", "--wait=200ms", "--interval=50ms")
	require.Equal(t, 3, exit, "stdout: %s\nstderr: %s", stdout, stderr)
	require.Contains(t, stdout, "pending: pretrain deploy build-7")
	exit, _, stderr = runMain(t, "verdict", "--url="+base, "--version=build-8")
	require.Equal(t, 3, exit)
	require.Contains(t, stderr, "no deploy of version")
	// A detector that is not there is an error, not a verdict, also after
	// waiting for it.
	require.NoError(t, d.stop(t))
	exit, _, stderr = runMain(t, "verdict", "--url="+base, "--version=build-7")
	require.Equal(t, 3, exit)
	require.Contains(t, stderr, "connect")
	exit, _, stderr = runMain(t, "verdict", "--url="+base, "--version=build-7", "--wait=200ms", "--interval=50ms")
	require.Equal(t, 3, exit)
	require.Contains(t, stderr, "connect")
}
