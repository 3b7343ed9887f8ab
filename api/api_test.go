package api_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/api"
	"github.com/wikimedia/pretrain-detector/detect"
)

// webFixture is a handler with every hook wired to something a test can
// observe.
type webFixture struct {
	srv      *httptest.Server
	ready    atomic.Bool
	reloads  atomic.Int32
	reloadFn func() error

	mu       sync.Mutex
	findings []detect.Finding
	deploys  []api.DeployMarker
	addErr   error
}

func newWebFixture(t *testing.T, findings []detect.Finding, lifecycle bool) *webFixture {
	t.Helper()
	f := &webFixture{findings: findings}
	reg := prometheus.NewRegistry()
	promauto.With(reg).NewCounter(prometheus.CounterOpts{Name: "web_test_events_total", Help: "A counter for the test."}).Add(3)
	o := api.Options{
		Gatherer: reg,
		Findings: func() []detect.Finding {
			f.mu.Lock()
			defer f.mu.Unlock()
			return append([]detect.Finding(nil), f.findings...)
		},
		Ready: func() (bool, string) {
			if f.ready.Load() {
				return true, ""
			}
			return false, "warming the windows up from Kafka"
		},
		AddDeploy: func(m api.DeployMarker) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.addErr != nil {
				return f.addErr
			}
			f.deploys = append(f.deploys, m)
			return nil
		},
		Status: func() any { return map[string]any{"cohort": []string{"testwiki"}, "ready": f.ready.Load()} },
		Now:    func() time.Time { return webNow },
	}
	if lifecycle {
		o.Reload = func() error {
			f.reloads.Add(1)
			if f.reloadFn != nil {
				return f.reloadFn()
			}
			return nil
		}
	}
	f.srv = httptest.NewServer(api.NewHandler(o))
	t.Cleanup(f.srv.Close)
	return f
}

// webNow is the fixture's clock: deploy markers are checked against it.
var webNow = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

type response struct {
	code   int
	header http.Header
	body   string
}

func (f *webFixture) do(t *testing.T, method, path, body string) response {
	t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	return f.doType(t, method, path, ct, body)
}

func (f *webFixture) doType(t *testing.T, method, path, contentType, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.srv.Client().Do(req)
	require.NoError(t, err)
	defer func() { require.NoError(t, resp.Body.Close()) }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

func TestWebEndpoints(t *testing.T) {
	f := newWebFixture(t, nil, true)
	tests := []struct {
		name, method, path string
		ready              bool
		wantCode           int
		wantBody           string
		wantType           string
		wantAllow          string
	}{
		{name: "metrics", method: "GET", path: "/metrics", wantCode: 200, wantBody: "web_test_events_total 3", wantType: "text/plain"},
		{name: "healthy", method: "GET", path: "/-/healthy", wantCode: 200, wantBody: "Healthy."},
		{name: "not ready says why", method: "GET", path: "/-/ready", wantCode: 503, wantBody: "Not ready: warming the windows up from Kafka"},
		{name: "ready", method: "GET", path: "/-/ready", ready: true, wantCode: 200, wantBody: "Ready."},
		{name: "healthy refuses POST", method: "POST", path: "/-/healthy", wantCode: 405, wantAllow: "GET, HEAD"},
		{name: "reload refuses GET", method: "GET", path: "/-/reload", wantCode: 405, wantAllow: "POST"},
		{name: "deploys refuses GET", method: "GET", path: "/api/v1/deploys", wantCode: 405, wantAllow: "POST"},
		{name: "findings refuses POST", method: "POST", path: "/api/v1/findings", wantCode: 405, wantAllow: "GET, HEAD"},
		{name: "no findings is an empty list", method: "GET", path: "/api/v1/findings", wantCode: 200, wantBody: "[]\n", wantType: "application/json"},
		{name: "status", method: "GET", path: "/api/v1/status", wantCode: 200, wantBody: `"cohort":["testwiki"]`, wantType: "application/json"},
		{name: "pprof index", method: "GET", path: "/debug/pprof/", wantCode: 200, wantBody: "goroutine"},
		{name: "pprof cmdline", method: "GET", path: "/debug/pprof/cmdline", wantCode: 200},
		{name: "pprof heap", method: "GET", path: "/debug/pprof/heap?debug=1", wantCode: 200, wantBody: "heap profile"},
		{name: "index", method: "GET", path: "/", wantCode: 200, wantBody: "/api/v1/findings"},
		{name: "unknown path", method: "GET", path: "/api/v1/nope", wantCode: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.ready.Store(tc.ready)
			r := f.do(t, tc.method, tc.path, "")
			require.Equal(t, tc.wantCode, r.code, r.body)
			require.Contains(t, r.body, tc.wantBody)
			if tc.wantType != "" {
				require.True(t, strings.HasPrefix(r.header.Get("Content-Type"), tc.wantType), r.header.Get("Content-Type"))
			}
			if tc.wantType == "application/json" {
				require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
			}
			if tc.wantAllow != "" {
				require.Equal(t, tc.wantAllow, r.header.Get("Allow"))
			}
		})
	}
	require.Zero(t, f.reloads.Load(), "GET never reloads")
}

func TestWebReload(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		f := newWebFixture(t, nil, true)
		r := f.do(t, "POST", "/-/reload", "")
		require.Equal(t, 200, r.code, r.body)
		require.EqualValues(t, 1, f.reloads.Load())
	})
	t.Run("a bad config is a 500 with the error", func(t *testing.T) {
		f := newWebFixture(t, nil, true)
		f.reloadFn = func() error { return errors.New("field detect.alpha: want 0 < alpha < 1") }
		r := f.do(t, "POST", "/-/reload", "")
		require.Equal(t, 500, r.code)
		require.Contains(t, r.body, "field detect.alpha")
	})
	t.Run("lifecycle disabled", func(t *testing.T) {
		f := newWebFixture(t, nil, false)
		r := f.do(t, "POST", "/-/reload", "")
		require.Equal(t, 404, r.code)
		require.Zero(t, f.reloads.Load())
	})
}

func TestWebDeploys(t *testing.T) {
	at := time.Date(2026, 3, 4, 9, 58, 0, 0, time.UTC)
	tests := []struct {
		name     string
		body     string
		addErr   error
		wantCode int
		wantBody string
		want     *api.DeployMarker // the marker AddDeploy receives
	}{
		{name: "pretrain", body: `{"scope":"pretrain","version":"1.47.0-alpha","at":"2026-03-04T10:58:00+01:00"}`,
			wantCode: 202, want: &api.DeployMarker{Scope: "pretrain", Version: "1.47.0-alpha", At: at}},
		{name: "train group", body: `{"scope":"train","group":"group1","version":"1.46.0-wmf.18","at":"2026-03-04T09:58:00Z"}`,
			wantCode: 202, want: &api.DeployMarker{Scope: "train", Group: "group1", Version: "1.46.0-wmf.18", At: at}},
		{name: "at defaults to now", body: `{"scope":"pretrain","version":"1.47.0-alpha"}`, wantCode: 202,
			want: &api.DeployMarker{Scope: "pretrain", Version: "1.47.0-alpha", At: webNow}},
		{name: "at a few minutes ahead", body: `{"scope":"pretrain","version":"1.47.0-alpha","at":"2026-03-04T10:04:00Z"}`, wantCode: 202,
			want: &api.DeployMarker{Scope: "pretrain", Version: "1.47.0-alpha", At: webNow.Add(4 * time.Minute)}},
		{name: "at far ahead", body: `{"scope":"train","version":"x","at":"2200-01-01T00:00:00Z"}`, wantCode: 400, wantBody: "field at"},
		{name: "at six minutes ahead", body: `{"scope":"train","version":"x","at":"2026-03-04T10:06:00Z"}`, wantCode: 400, wantBody: "field at: 2026-03-04T10:06:00Z is more than 5m0s ahead"},
		{name: "at before the window", body: `{"scope":"train","version":"x","at":"2026-03-04T07:59:00Z"}`, wantCode: 400, wantBody: "field at"},
		{name: "at in year 1600", body: `{"scope":"train","version":"x","at":"1600-01-01T00:00:00Z"}`, wantCode: 400, wantBody: "field at"},
		{name: "long version", body: `{"scope":"train","version":"` + strings.Repeat("v", 129) + `"}`, wantCode: 400, wantBody: "field version: 129 bytes"},
		{name: "version with a line break", body: `{"scope":"train","version":"x\nlevel=error msg=forged"}`, wantCode: 400, wantBody: "field version"},
		{name: "long group", body: `{"scope":"train","group":"` + strings.Repeat("g", 65) + `","version":"x"}`, wantCode: 400, wantBody: "field group: 65 bytes"},
		{name: "long scope not echoed whole", body: `{"scope":"` + strings.Repeat("s", 1000) + `","version":"x"}`, wantCode: 400, wantBody: "field scope"},
		{name: "bad scope", body: `{"scope":"staging","version":"x"}`, wantCode: 400, wantBody: "field scope"},
		{name: "missing scope", body: `{"version":"x"}`, wantCode: 400, wantBody: "field scope"},
		{name: "missing version", body: `{"scope":"train","group":"group0"}`, wantCode: 400, wantBody: "field version"},
		{name: "bad time", body: `{"scope":"train","version":"x","at":"yesterday"}`, wantCode: 400, wantBody: "field at"},
		{name: "wrong type", body: `{"scope":7,"version":"x"}`, wantCode: 400, wantBody: "scope"},
		{name: "unknown field", body: `{"scope":"train","version":"x","wiki":"enwiki"}`, wantCode: 400, wantBody: `unknown field "wiki"`},
		{name: "not json", body: `scope=train`, wantCode: 400, wantBody: "bad deploy marker"},
		{name: "two objects", body: `{"scope":"train","version":"x"}{"scope":"train","version":"y"}`, wantCode: 400, wantBody: "more after it"},
		{name: "too large", body: `{"scope":"train","version":"` + strings.Repeat("x", 70<<10) + `"}`, wantCode: 400, wantBody: "too large"},
		{name: "topic unreachable", body: `{"scope":"train","version":"x"}`, addErr: errors.New("marker topic: no broker reachable"), wantCode: 503, wantBody: "no broker reachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newWebFixture(t, nil, false)
			f.addErr = tc.addErr
			r := f.do(t, "POST", "/api/v1/deploys", tc.body)
			require.Equal(t, tc.wantCode, r.code, r.body)
			require.Contains(t, r.body, tc.wantBody)
			f.mu.Lock()
			got := append([]api.DeployMarker(nil), f.deploys...)
			f.mu.Unlock()
			if tc.want == nil {
				require.Empty(t, got, "a refused marker is not added")
				return
			}
			require.Len(t, got, 1)
			require.Regexp(t, `^127\.0\.0\.1:\d+$`, got[0].By, "who posted it")
			tc.want.By = got[0].By
			require.Equal(t, *tc.want, got[0])
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			var echo api.DeployMarker
			require.NoError(t, json.Unmarshal([]byte(r.body), &echo))
			require.True(t, echo.At.Equal(got[0].At))
			echo.At = got[0].At
			require.Equal(t, got[0], echo, "the response is the marker as recorded")
		})
	}
}

// TestWebDeploysRefused: without an AddDeploy (no --web.enable-admin-api)
// the endpoint is 404 whatever the body; with one, only application/json
// gets through (415 for the content types a cross-site form or a simple
// fetch can send).
func TestWebDeploysRefused(t *testing.T) {
	const body = `{"scope":"pretrain","version":"1.47.0-alpha"}`
	t.Run("admin API off", func(t *testing.T) {
		srv := httptest.NewServer(api.NewHandler(api.Options{}))
		defer srv.Close()
		f := &webFixture{srv: srv}
		r := f.do(t, "POST", "/api/v1/deploys", body)
		require.Equal(t, http.StatusNotFound, r.code)
		require.Contains(t, r.body, "--web.enable-admin-api")
		require.Equal(t, http.StatusMethodNotAllowed, f.do(t, "GET", "/api/v1/deploys", "").code)
	})
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "application/jsonp"} {
		t.Run("content type "+ct, func(t *testing.T) {
			f := newWebFixture(t, nil, false)
			r := f.doType(t, "POST", "/api/v1/deploys", ct, body)
			require.Equal(t, http.StatusUnsupportedMediaType, r.code, r.body)
			f.mu.Lock()
			defer f.mu.Unlock()
			require.Empty(t, f.deploys)
		})
	}
	t.Run("content type with charset", func(t *testing.T) {
		f := newWebFixture(t, nil, false)
		r := f.doType(t, "POST", "/api/v1/deploys", "application/json; charset=utf-8", body)
		require.Equal(t, http.StatusAccepted, r.code, r.body)
	})
	t.Run("basic-auth user recorded and logged", func(t *testing.T) {
		var logs syncBuf
		f := &webFixture{}
		f.srv = httptest.NewServer(api.NewHandler(api.Options{Now: func() time.Time { return webNow },
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			AddDeploy: func(m api.DeployMarker) error {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.deploys = append(f.deploys, m)
				return nil
			}}))
		defer f.srv.Close()
		req, err := http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+"/api/v1/deploys", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("releng-bot", "pw")
		resp, err := f.srv.Client().Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusAccepted, resp.StatusCode)
		f.mu.Lock()
		defer f.mu.Unlock()
		require.Regexp(t, `^releng-bot@127\.0\.0\.1:\d+$`, f.deploys[0].By)
		require.Regexp(t, `msg="Deploy marker posted" remote_addr=127\.0\.0\.1:\d+ user=releng-bot scope=pretrain group="" version=1\.47\.0-alpha`, logs.String())
	})
}

// syncBuf is a strings.Builder safe for the server's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRedactedWhereFindingsLeave: the exemplar's query string and IP do not
// reach the findings API, the console, the JSONL or the alert.
func TestRedactedWhereFindingsLeave(t *testing.T) {
	const secret = "target=Jane_Doe&token=abc123"
	f := loadTestFindings(t)[0]
	f.Evidence.Exemplar = "[r1] /w/index.php?" + secret + "   Wikimedia\\Rdbms\\DBQueryError from 198.51.100.23"
	w := newWebFixture(t, []detect.Finding{f}, false)
	api := w.do(t, "GET", "/api/v1/findings", "").body
	var console, jsonl strings.Builder
	require.NoError(t, alert.NewConsole(&console).Notify([]detect.Finding{f}, nil))
	require.NoError(t, alert.NewJSONL(&jsonl).Notify([]detect.Finding{f}, nil))
	ann := alert.AlertFor(f, alert.NotifierOptions{}, webNow).Annotations["exemplar"]
	for where, out := range map[string]string{"api": api, "console": console.String(), "jsonl": jsonl.String(), "alert": ann} {
		require.NotContains(t, out, secret, where)
		require.NotContains(t, out, "198.51.100.23", where)
		require.Contains(t, out, "/w/index.php?…", where)
	}
}

func loadTestFindings(t *testing.T) []detect.Finding {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "alert", "testdata", "findings.json")) // the notifier's golden findings
	require.NoError(t, err)
	var fs []detect.Finding
	require.NoError(t, json.Unmarshal(b, &fs))
	require.Len(t, fs, 5)
	return fs
}

func TestWebFindingsFilters(t *testing.T) {
	f := newWebFixture(t, loadTestFindings(t), false)
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"spill-3f9a1c0e52d7b4a8", "leak-enwiki", "pretrain-7c11", "train-group1-aa", "wiki-dewiki"}},
		{"id=leak-enwiki", []string{"leak-enwiki"}},
		{"state=resolved", []string{"pretrain-7c11"}},
		{"state=firing", []string{"spill-3f9a1c0e52d7b4a8", "leak-enwiki", "train-group1-aa", "wiki-dewiki"}},
		{"kind=shared-data-spillover", []string{"spill-3f9a1c0e52d7b4a8"}},
		{"kind=wiki-anomaly&state=firing", []string{"wiki-dewiki"}},
		{"kind=wiki-anomaly&state=resolved", []string{}},
		{"id=leak-enwiki&kind=train-regression", []string{}},
		{"id=nope", []string{}},
		{"state=pending", []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			r := f.do(t, "GET", "/api/v1/findings?"+tc.query, "")
			require.Equal(t, 200, r.code)
			var got []detect.Finding
			require.NoError(t, json.Unmarshal([]byte(r.body), &got))
			ids := []string{}
			for _, g := range got {
				ids = append(ids, g.ID)
			}
			require.Equal(t, tc.want, ids)
		})
	}
}

// TestWebFindingsContract checks the JSON field names and forms of
// the findings contract of docs/design.md section 6 on the wire, not through our own types.
func TestWebFindingsContract(t *testing.T) {
	fs := loadTestFindings(t)
	f := newWebFixture(t, fs, false)
	r := f.do(t, "GET", "/api/v1/findings?id="+url.QueryEscape(fs[0].ID), "")
	require.Equal(t, 200, r.code)
	var got []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.body), &got))
	require.Len(t, got, 1)
	g := got[0]
	for _, k := range []string{"id", "kind", "severity", "summary", "wikis", "started_at", "detected_at", "normalized_message", "exception_class", "channel", "deploy", "evidence"} {
		require.Contains(t, g, k)
	}
	require.Equal(t, "shared-data-spillover", g["kind"])
	require.Equal(t, "critical", g["severity"])
	require.Equal(t, []any{"enwiktionary", "frwikisource", "testwiki", "eswikibooks", "nlwikivoyage"}, g["wikis"])
	for _, k := range []string{"started_at", "detected_at"} {
		_, err := time.Parse(time.RFC3339, g[k].(string))
		require.NoError(t, err, k)
	}
	d := g["deploy"].(map[string]any)
	require.Equal(t, "pretrain", d["scope"])
	require.Equal(t, "1.47.0-alpha", d["version"])
	require.Equal(t, "2026-03-04T09:58:00Z", d["at"])
	ev := g["evidence"].(map[string]any)
	require.InDelta(t, 1.2e-41, ev["p_value"], 1e-50)
	require.EqualValues(t, 412, ev["cohort_errors"])
}

// TestUntrustedTextEscapedForHumans feeds a finding whose event-derived
// text holds markup and terminal escapes, and checks each place a person
// reads it: the console shows the markup as text with no control
// characters; the JSON API escapes it so no browser can run it.
func TestUntrustedTextEscapedForHumans(t *testing.T) {
	const script = `<script>alert(1)</script>`
	const tty = "\x1b[2J\x1b]0;pwned\x07\r\u202e"
	f := loadTestFindings(t)[0]
	f.Summary = "DBQueryError " + script + tty + " on s3"
	f.NormalizedMessage = "Error 1054: " + script + tty
	f.Wikis = []string{"enwiktionary", script + tty}
	f.Evidence.Exemplar = "Error 1054: " + script + "\n" + tty + "Unknown column"
	f.Evidence.Note = script + tty

	t.Run("console", func(t *testing.T) {
		var b strings.Builder
		require.NoError(t, alert.NewConsole(&b).Notify([]detect.Finding{f}, nil))
		out := b.String()
		require.Equal(t, out, alert.FindingsText([]detect.Finding{f}))
		require.Contains(t, out, "DBQueryError "+script)
		require.Contains(t, out, "wikis: enwiktionary,"+script)
		require.Contains(t, out, "exemplar: Error 1054: "+script)
		require.Contains(t, out, "note: "+script)
		for i, r := range out {
			if r == '\n' {
				continue
			}
			require.False(t, unicode.IsControl(r), "control character %U at %d in %q", r, i, out)
			require.NotEqual(t, '\u202e', r, "bidi override at %d", i)
		}
	})
	t.Run("json api", func(t *testing.T) {
		w := newWebFixture(t, []detect.Finding{f}, false)
		r := w.do(t, "GET", "/api/v1/findings", "")
		require.Equal(t, 200, r.code)
		require.NotContains(t, r.body, "<script>")
		require.NotContains(t, r.body, "</script>")
		require.Contains(t, r.body, `\u003cscript\u003ealert(1)\u003c/script\u003e`)
		require.Equal(t, "application/json", r.header.Get("Content-Type"))
		require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
		// The API is data: the text decodes back to what was found.
		var got []detect.Finding
		require.NoError(t, json.Unmarshal([]byte(r.body), &got))
		require.Equal(t, f.Summary, got[0].Summary)
		require.Equal(t, f.Evidence.Exemplar, got[0].Evidence.Exemplar)
	})
	t.Run("jsonl", func(t *testing.T) {
		var b strings.Builder
		require.NoError(t, alert.NewJSONL(&b).Notify([]detect.Finding{f}, nil))
		require.NotContains(t, b.String(), "<script>")
		require.Contains(t, b.String(), `\u003cscript\u003e`)
		require.Equal(t, 1, strings.Count(b.String(), "\n"), "one line per finding")
	})
}
