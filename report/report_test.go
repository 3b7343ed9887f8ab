package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/verdict"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// hostile is text from events that must reach the page as text.
const hostile = `</pre><script>alert("x")</script><img src=x onerror=alert(1)> & "quotes" 'too'`

// sampleData is a replay with three findings: one with a fingerprint and a
// plot, one over many wikis with a plot, one without a plot.
func sampleData() Data {
	resolved := t0.Add(95 * time.Minute)
	plot := func(start time.Time, n, onset int, fp bool) *Plot {
		p := &Plot{Start: start, Step: time.Minute, Cohort: []string{"testwiki"}, CohortScope: "pretrain"}
		if fp {
			p.Fingerprint = "00000000deadbeef"
		}
		for i := range n {
			pt := Point{CohortRequests: 120 + int64(i%7), CohortErrors: int64(i % 2), ControlRequests: 24000 + int64(i*13), ControlErrors: 9 + int64(i%4)}
			if i >= onset {
				pt.CohortErrors += 9
				if fp {
					pt.FingerprintErrors = 8
				}
			}
			if i == 5 {
				pt.CohortRequests, pt.CohortErrors = 0, 0 // a minute without cohort traffic: a gap
			}
			p.Points = append(p.Points, pt)
		}
		return p
	}
	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf("wiki%02d", i)
	}
	spill := plot(t0.Add(10*time.Minute), 70, 35, true)
	spill.Cohort, spill.CohortScope = many, "train"
	return Data{
		Version: "0.1.0-test",
		From:    t0, To: t0.Add(3 * time.Hour), Start: t0.Add(-2 * time.Hour), Elapsed: 4200 * time.Millisecond,
		Inputs: []Input{
			{Cluster: "logging-eqiad", Topic: "k8s-mw-eqiad", Format: "mediawiki-log", Partitions: 4, Records: 120034, Bytes: 310 << 20, Rejected: 2, Skipped: 5000},
			{Cluster: "logging-eqiad", Topic: "mediawiki.httpd.accesslog", Format: "httpd-accesslog", Partitions: 4, Records: 4200000, Bytes: 2 << 30},
		},
		Records: 4320034, Rejected: 2, Skipped: 5000, Events: 4315032,
		Deploys: []Deploy{
			{Scope: "pretrain", Version: "mw-pretrain-main-6f9c7d8b5", Source: "rollout", At: t0.Add(20 * time.Minute)},
			{Scope: "train", Group: "group0", Version: "1.47.0-wmf.17", Source: "mwversion", At: t0.Add(90 * time.Minute)},
		},
		Verdicts: []verdict.Result{
			{Deploy: verdict.Deploy{Scope: "train", Group: "group0", Version: "1.47.0-wmf.17", At: t0.Add(90 * time.Minute)}, Verdict: verdict.Pass,
				Findings: []string{}, Evidence: verdict.Evidence{Reason: "no finding blamed it", RatioChangeUpper: 1.31, Margin: 1.5, Alpha: 1e-3}},
			{Deploy: verdict.Deploy{Scope: "pretrain", Version: "mw-pretrain-main-6f9c7d8b5", At: t0.Add(20 * time.Minute)}, Verdict: verdict.Fail,
				Findings: []string{"a1b2c3d4e5f60718"}, Evidence: verdict.Evidence{Reason: "a finding blaming this deploy fired " + hostile}},
		},
		Findings: []Finding{
			{
				Finding: detect.Finding{
					ID: "a1b2c3d4e5f60718", Kind: detect.KindPretrainRegression, Severity: "warning", State: detect.StateResolved,
					Summary: "New error on testwiki after the Pretrain deploy at 12:20: " + hostile, Wikis: []string{"testwiki"},
					StartedAt: t0.Add(24 * time.Minute), DetectedAt: t0.Add(26 * time.Minute), ResolvedAt: &resolved,
					NormalizedMessage: "Call to undefined method " + hostile, ExceptionClass: "Error", Channel: "exception", Fingerprint: "00000000deadbeef",
					Deploy: &detect.Deploy{Scope: "pretrain", Version: "mw-pretrain-main-6f9c7d8b5", At: t0.Add(20 * time.Minute)},
					Evidence: detect.Evidence{Test: "new fingerprint", CohortErrors: 31, CohortRequests: 720, ControlErrors: 0, ControlRequests: 150000,
						PValue: 3.2e-9, Alpha: 1e-3, Distinct: 29, Exemplar: "[abc] /w/index.php   Error: " + hostile, Versions: []string{"1.47.0-alpha"},
						TopWikis: []detect.WikiCount{{Wiki: "testwiki", Errors: 31, Requests: 720}}},
				},
				Plot: plot(t0.Add(-6*time.Minute), 62, 30, true),
			},
			{
				Finding: detect.Finding{
					ID: "0f1e2d3c4b5a6978", Kind: detect.KindSharedDataSpillover, Severity: "critical", State: detect.StateFiring,
					Summary: "Shared-data spillover on 40 wikis.", Wikis: many,
					StartedAt: t0.Add(45 * time.Minute), DetectedAt: t0.Add(49 * time.Minute),
					Evidence: detect.Evidence{Test: "onset", PValue: 1e-12, Alpha: 1e-3, SharedData: "core-db", Frame: "includes/libs/rdbms/database/Database.php"},
				},
				Plot: spill,
			},
			{
				Finding: detect.Finding{
					ID: "ffeeddccbbaa9988", Kind: detect.KindWikiAnomaly, Severity: "info", State: detect.StateFiring,
					Summary: "thwiki deviates from its baseline.", Wikis: []string{"thwiki"},
					StartedAt: t0.Add(150 * time.Minute), DetectedAt: t0.Add(155 * time.Minute),
					Evidence: detect.Evidence{Test: "e-detector", EValue: 2.5e6, RateRatio: 4.2, BaselineRatio: 1.5},
				},
			},
		},
	}
}

func renderReport(t *testing.T, d Data) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, Write(&b, d))
	return b.String()
}

func TestWriteEscapesEventText(t *testing.T) {
	out := renderReport(t, sampleData())
	require.NotContains(t, out, "<script")
	require.NotContains(t, out, "<img")
	require.NotContains(t, out, `alert("x")`)
	require.Contains(t, out, "&lt;script&gt;")
	require.Contains(t, out, "&lt;/pre&gt;")
	// Nothing is loaded from anywhere: no URL but the page's own anchors.
	for _, s := range []string{"http:", "https:", "<link", "<iframe", "<object", "@import", "url("} {
		require.NotContains(t, out, s)
	}
	require.Contains(t, out, `Content-Security-Policy" content="default-src 'none'`)
}

func TestWriteLayout(t *testing.T) {
	d := sampleData()
	out := renderReport(t, d)
	for _, tc := range []struct {
		name string
		want string
		n    int
	}{
		{"one svg per plot and the timeline", "<svg ", 3},
		{"a section per finding", `<section class="finding"`, 3},
		{"a timeline row per finding", `<a href="#f`, 3},
		{"the cohort line, broken by the minute without requests", `class="l-cohort" d="M`, 2},
		{"the error's own line where there is a fingerprint", `class="l-fp"`, 2},
		{"deploy markers: the timeline's two, and the Pretrain one inside each plot", `<line class="deploy-`, 2 + 1 + 1},
		{"onset and detection markers", `class="onset"`, 2},
		{"one point per minute with cohort traffic", `<circle class="d-cohort"`, 61 + 69},
		{"a warm-up band", `class="warmup"`, 1},
		{"the plot-less finding says so", "No per-minute series", 1},
		{"a verdict row per deploy", `<span class="verdict v-`, 2 + 1},
		{"the fail links to its finding's section", `<a class="mono" href="#f1-a1b2c3d4e5f60718">`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.n, strings.Count(out, tc.want), tc.want)
		})
	}
	// The gap: the cohort path starts again after the empty minute.
	i := strings.Index(out, `class="l-cohort" d="`)
	path := out[i : i+strings.Index(out[i:], `"/>`)]
	require.Equal(t, 2, strings.Count(path, "M"), path)
	require.Contains(t, out, "wiki10, wiki11 and 28 more") // 12 wikis listed, the rest counted
	require.Contains(t, out, "4\u202f320\u202f034")        // thousands separated
	require.Contains(t, out, "1.03 M/s")                   // events per second of wall time
}

func TestWriteDeterministic(t *testing.T) {
	require.Equal(t, renderReport(t, sampleData()), renderReport(t, sampleData()))
}

func TestWriteEmpty(t *testing.T) {
	out := renderReport(t, Data{From: t0, To: t0.Add(time.Hour), Start: t0.Add(-2 * time.Hour)})
	require.Contains(t, out, "No finding was detected in the range.")
	require.Contains(t, out, "No deploy was seen in the range.")
	require.Equal(t, 1, strings.Count(out, "<svg "))
}

func TestSummary(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteSummary(&b, sampleData()))
	var got struct {
		Kinds    map[string]int `json:"findings_by_kind"`
		Findings []struct {
			ID, Kind string
		} `json:"findings"`
		Deploys []struct {
			Version, Verdict string
			Findings         []string
		} `json:"deploys"`
	}
	require.NoError(t, json.Unmarshal(b.Bytes(), &got))
	require.Equal(t, map[string]int{"pretrain-regression": 1, "shared-data-spillover": 1, "wiki-anomaly": 1}, got.Kinds)
	require.Len(t, got.Findings, 3)
	require.Len(t, got.Deploys, 2)
	require.Equal(t, "mw-pretrain-main-6f9c7d8b5", got.Deploys[1].Version)
	require.Equal(t, "fail", got.Deploys[1].Verdict)
	require.Equal(t, []string{"a1b2c3d4e5f60718"}, got.Deploys[1].Findings)
	require.NotContains(t, b.String(), "<script", "JSON escapes markup")
}
