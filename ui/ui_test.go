package ui

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/render"
	"github.com/wikimedia/pretrain-detector/verdict"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func at(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

// hostile is an error message as an attacker would log it.
const hostile = `</dd><script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"`

// Versions of the fixture's deploys: an earlier Pretrain build whose
// window a newer one closed, the Pretrain build a spillover follows (its
// rollout id, with characters a URL must escape), and a train deploy.
var (
	earlier   = verdict.Deploy{Scope: "pretrain", Version: "mw-pretrain-main-1111", At: at(45), Source: "rollout"}
	spilled   = verdict.Deploy{Scope: "pretrain", Version: "mw-pretrain main/6f9c7d8b5", At: at(60), Source: "api"}
	trainDep  = verdict.Deploy{Scope: "train", Group: "group0", Version: "1.47.0-wmf.17", At: at(20), Source: "mwversion"}
	spillover = detect.Finding{
		ID: "0f1e2d3c4b5a6978", Kind: detect.KindSharedDataSpillover, Severity: "critical", State: detect.StateFiring,
		Summary: "New error on 51 s3 wikis after the Pretrain deploy at 13:00: " + hostile, Wikis: []string{"aawiki", "abwiki", "acewiki"},
		StartedAt: at(70), DetectedAt: at(72), NormalizedMessage: "Error: " + hostile, Fingerprint: "00000000deadbeef",
		Deploy:   &detect.Deploy{Scope: "pretrain", Version: spilled.Version, At: spilled.At},
		Evidence: detect.Evidence{Test: "onset", PValue: 1e-12, Alpha: 1e-3, SharedData: "core-db", Exemplar: "[abc] /w/index.php " + hostile},
	}
	anomaly = detect.Finding{
		ID: "ffeeddccbbaa9988", Kind: detect.KindWikiAnomaly, Severity: "info", State: detect.StateResolved,
		Summary: "thwiki deviates from its baseline.", Wikis: []string{"thwiki"}, StartedAt: at(30), DetectedAt: at(35),
		Evidence: detect.Evidence{Test: "e-detector", EValue: 2.5e6, RateRatio: 4.2, BaselineRatio: 1.5},
	}
)

// fixture is the page over a real window with two hours of traffic:
// testwiki Pretrain-served and the rest of the fleet train-served.
type fixture struct {
	ui    *UI
	store *window.Store
	mux   *http.ServeMux
}

func newFixture(t *testing.T) *fixture { return newFixtureRefresh(t, 0) }

// newFixtureRefresh is newFixture with the page refreshing every refresh.
func newFixtureRefresh(t *testing.T, refresh time.Duration) *fixture {
	t.Helper()
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	store, err := window.New(window.Config{Bucket: 10 * time.Second, Length: 2 * time.Hour, Lateness: 30 * time.Second,
		CacheBytes: 32 << 20, CatalogueEntries: 1000, CatalogueBytes: 1 << 20}, wikis, event.NewInterner(), event.NewInterner(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, store.Close()) })
	w := store.NewWriter()
	testwiki, enwiki := wikis.ByNameString("testwiki"), wikis.ByNameString("enwiki")
	add := func(tm time.Time, id wikimap.ID, sc event.Scope, n int, kind event.Kind) {
		for i := range n {
			ev := event.Event{Time: tm.Add(time.Duration(i) * time.Second).UnixNano(), Kind: kind, Wiki: id, Scope: sc, Status: 200}
			var d *event.Detail
			if kind == event.KindError {
				ev.Fingerprint = 7
				d = &event.Detail{Message: []byte("m"), ReqID: []byte(fmt.Sprint(i))}
			}
			w.Add(&ev, d)
		}
	}
	for m := range 110 {
		add(at(m), testwiki, event.ScopePretrain, 20, event.KindRequest)
		add(at(m), testwiki, event.ScopePretrain, 1, event.KindError)
		add(at(m), enwiki, event.ScopeTrain, 40, event.KindRequest)
		add(at(m), enwiki, event.ScopeTrain, 2, event.KindError)
	}
	w.Flush()
	store.Sync()

	reg := prometheus.NewRegistry()
	f := promauto.With(reg)
	parts := f.NewGaugeVec(prometheus.GaugeOpts{Name: "detector_ingest_partitions", Help: "h"}, []string{"topic"})
	conn := f.NewGaugeVec(prometheus.GaugeOpts{Name: "detector_ingest_partitions_connected", Help: "h"}, []string{"topic"})
	missing := f.NewGaugeVec(prometheus.GaugeOpts{Name: "detector_ingest_topic_missing", Help: "h"}, []string{"topic"})
	lag := f.NewGaugeVec(prometheus.GaugeOpts{Name: "detector_ingest_consumer_lag_records", Help: "h"}, []string{"topic"})
	parts.WithLabelValues("mediawiki.httpd.accesslog").Set(4)
	conn.WithLabelValues("mediawiki.httpd.accesslog").Set(3)
	lag.WithLabelValues("mediawiki.httpd.accesslog").Set(1234)
	parts.WithLabelValues("k8s-mw-eqiad").Set(2)
	conn.WithLabelValues("k8s-mw-eqiad").Set(2)
	missing.WithLabelValues("k8s-mw-codfw").Set(1)

	src := verdict.NewWindowSource(store, wikis, []string{"testwiki"})
	u, err := New(Options{
		Version:  "0.1.0-test",
		Refresh:  refresh,
		Findings: func() []detect.Finding { return []detect.Finding{anomaly, spillover} },
		Deploys: func() []verdict.Deploy {
			return []verdict.Deploy{spilled, trainDep, earlier, {Scope: "pretrain", Version: "build-42", At: at(61), Source: "api"}}
		},
		Source: src,
		Ledger: verdict.NewLedger(verdict.Config{Alpha: 1e-3, Margin: 1.5, Attribution: time.Hour, MinPrePeriod: 30 * time.Minute}),
		Plot: func(f detect.Finding) *render.Plot {
			if f.ID != spillover.ID {
				return nil
			}
			p := &render.Plot{Start: at(40), Step: time.Minute, Cohort: f.Wikis, CohortScope: "train", Fingerprint: f.Fingerprint}
			for i := range 50 {
				pt := render.Point{CohortRequests: 900, CohortErrors: 2, ControlRequests: 24000, ControlErrors: 40}
				if i >= 30 {
					pt.CohortErrors, pt.FingerprintErrors = 14, 12
				}
				p.Points = append(p.Points, pt)
			}
			return p
		},
		Health: func() Health {
			cs := detect.CohortStatus{Insufficient: "3 cohort errors since the deploy: too few to tell a regression from noise yet",
				Deploy: &detect.Deploy{Scope: "pretrain", At: spilled.At}, Threshold: 1000}
			return Health{Ready: true, Watermark: src.Watermark(), Topics: TopicsFromMetrics(reg), Cohort: &cs,
				Incidents: []Incident{{What: "s3 database incident " + hostile, Since: at(100)}}}
		},
	})
	require.NoError(t, err)
	mux := http.NewServeMux()
	u.Register(mux)
	return &fixture{ui: u, store: store, mux: mux}
}

func (f *fixture) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(body)
}

func TestDeploysAPI(t *testing.T) {
	f := newFixture(t)
	res, body := f.get(t, "/api/v1/deploys")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "application/json", res.Header.Get("Content-Type"))
	var all []verdict.Result
	require.NoError(t, json.Unmarshal([]byte(body), &all))
	require.Len(t, all, 3)
	require.Equal(t, []string{spilled.Version, earlier.Version, trainDep.Version}, []string{all[0].Version, all[1].Version, all[2].Version}, "newest first")

	// The deploy the spillover follows, by its URL-escaped version.
	res, body = f.get(t, "/api/v1/deploys/"+url.PathEscape(spilled.Version))
	require.Equal(t, http.StatusOK, res.StatusCode, body)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Equal(t, "fail", got["verdict"])
	require.Equal(t, "pretrain", got["scope"])
	require.Equal(t, spilled.Version, got["version"])
	require.Equal(t, spilled.At.Format(time.RFC3339), got["at"])
	require.Equal(t, []any{spillover.ID}, got["findings"])
	require.Contains(t, got, "evidence")

	// The earlier build: its window closed at the next Pretrain deploy,
	// fifteen minutes of testwiki's traffic bound nothing at alpha.
	_, body = f.get(t, "/api/v1/deploys/"+earlier.Version)
	var r verdict.Result
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	require.Equal(t, verdict.Insufficient, r.Verdict, r.Evidence.Reason)
	require.Equal(t, spilled.At, r.Evidence.WindowEnd)
	require.Equal(t, int64(15*20), r.Evidence.After.CohortRequests)

	// A train version by group; an unknown version or group is a 404 with
	// a JSON error.
	_, body = f.get(t, "/api/v1/deploys/1.47.0-wmf.17?group=group0")
	require.Contains(t, body, `"group":"group0"`)
	res, body = f.get(t, "/api/v1/deploys/1.47.0-wmf.17?group=group2")
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	require.Contains(t, body, `"error"`)
	res, body = f.get(t, "/api/v1/deploys/"+url.PathEscape("<script>"))
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	require.NotContains(t, body, "<script>")

	// A marker for the spilled deploy, posted a minute after its rollout,
	// names the same deploy.
	res, body = f.get(t, "/api/v1/deploys/build-42")
	require.Equal(t, http.StatusOK, res.StatusCode, body)
	require.Contains(t, body, `"verdict":"fail"`)
	require.Contains(t, body, `"aliases":["build-42"]`)

	_, body = f.get(t, "/api/v1/deploys?scope=train")
	require.NoError(t, json.Unmarshal([]byte(body), &all))
	require.Len(t, all, 1)
}

var (
	nonceAttr   = regexp.MustCompile(`<(script|style) nonce="([^"]+)">`)
	inlineEvent = regexp.MustCompile(`(?i)<[^>]+\son[a-z]+\s*=`)
	styleAttr   = regexp.MustCompile(`(?i)<[^>]+\sstyle\s*=`)
)

func TestIndexPage(t *testing.T) {
	f := newFixture(t)
	res, body := f.get(t, "/")
	require.Equal(t, http.StatusOK, res.StatusCode)
	csp := res.Header.Get("Content-Security-Policy")
	require.Contains(t, csp, "default-src 'none'")
	// One script and one style element, both with this response's nonce,
	// and the policy allows exactly that nonce.
	m := nonceAttr.FindAllStringSubmatch(body, -1)
	require.Len(t, m, 2)
	require.Equal(t, m[0][2], m[1][2])
	require.Contains(t, csp, "script-src 'nonce-"+m[0][2]+"'")
	require.Equal(t, 1, strings.Count(body, "<script"))
	require.Empty(t, inlineEvent.FindAllString(body, -1), "no inline event handler")
	require.Empty(t, styleAttr.FindAllString(body, -1), "no style attribute")
	for _, s := range []string{"http:", "https:", "<link", "<iframe", "@import", "url("} {
		require.NotContains(t, body, s, "nothing is loaded from elsewhere")
	}
	// A fresh nonce per response.
	res2, _ := f.get(t, "/")
	require.NotEqual(t, csp, res2.Header.Get("Content-Security-Policy"))

	// What the page lists: both findings, active first, with links, the
	// plot of the spillover, the deploy verdicts and the health.
	i, j := strings.Index(body, "shared-data-spillover"), strings.Index(body, "wiki-anomaly")
	require.Positive(t, i)
	require.Greater(t, j, i, "active before resolved")
	require.Contains(t, body, `<a href="/findings/0f1e2d3c4b5a6978">shared-data-spillover</a>`)
	require.Equal(t, 1, strings.Count(body, `class="l-cohort"`), "one plot: the anomaly has none")
	require.Contains(t, body, "The plot is on the finding&#39;s own page.")
	require.Contains(t, body, `<span class="verdict v-fail">fail</span>`)
	require.Contains(t, body, `<span class="verdict v-insufficient-evidence">insufficient-evidence</span>`)
	require.Contains(t, body, "aawiki, abwiki, acewiki")
	require.Contains(t, body, "mw-pretrain main/6f9c7d8b5")
	require.Contains(t, body, `<svg class="timeline"`)
	require.Contains(t, body, "insufficient evidence: 3 cohort errors")
	require.Contains(t, body, ">missing<")
	require.Contains(t, body, ">reconnecting<")
	require.Contains(t, body, "1\u202f234")
	// The part the script swaps in: the live element alone, no style or
	// script whose nonce would not be the page's.
	res, frag := f.get(t, "/?fragment=live")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.True(t, strings.HasPrefix(frag, `<div id="live">`), frag[:min(len(frag), 40)])
	require.NotContains(t, frag, "<style")
	require.NotContains(t, frag, "<script")
	require.Contains(t, frag, "shared-data-spillover")

	// Event text stays text.
	require.NotContains(t, body, "<img")
	require.NotContains(t, body, `alert("x")`)
	require.Contains(t, body, "&lt;script&gt;")
}

func TestFindingPage(t *testing.T) {
	f := newFixture(t)
	res, body := f.get(t, "/findings/"+spillover.ID)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, res.Header.Get("Content-Security-Policy"), "default-src 'none'")
	require.Contains(t, body, "<title>shared-data-spillover · Pretrain regression detector</title>")
	require.Equal(t, 1, strings.Count(body, `<section class="finding"`))
	require.Equal(t, 1, strings.Count(body, `class="l-cohort"`))
	require.Contains(t, body, `<line class="deploy-pretrain"`, "the deploy marker in the plot")
	require.Contains(t, body, "core-db")
	require.Contains(t, body, "The deploy's verdict")
	require.NotContains(t, body, "<img")
	require.Contains(t, body, "&lt;script&gt;")

	res, body = f.get(t, "/findings/"+url.PathEscape(hostile))
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	require.Contains(t, body, "Finding not found")
	require.NotContains(t, body, "<img")
	require.Empty(t, inlineEvent.FindAllString(body, -1))
}

func TestFindingPath(t *testing.T) {
	require.Equal(t, "/findings/abc", FindingPath("abc"))
	require.Equal(t, "/findings/a%2Fb%20c", FindingPath("a/b c"))
}
