package alert

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/redact"
)

// Rewrite testdata/alerts.golden.json with
// `go test ./alert -run TestAlertForGolden -update-alertmanager-golden`.
var updateGolden = flag.Bool("update-alertmanager-golden", false, "rewrite the alert mapping golden file")

// testNowRFC3339 is the wall clock the mapping tests pretend it is.
const testNowRFC3339 = "2026-03-04T15:00:00Z"

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, s)
	require.NoError(t, err)
	return ts
}

func loadFindings(t *testing.T) []detect.Finding {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "findings.json"))
	require.NoError(t, err)
	var fs []detect.Finding
	require.NoError(t, json.Unmarshal(b, &fs))
	require.NotEmpty(t, fs)
	return fs
}

func TestAlertForGolden(t *testing.T) {
	testNow := mustTime(t, testNowRFC3339)
	o := NotifierOptions{
		ExternalURL:  "https://detector.example.org/",
		DashboardURL: "https://grafana.wikimedia.org/d/pretrain?var-kind=<kind>",
		ExtraLabels:  map[string]string{"replay": "true"},
	}
	var alerts models.PostableAlerts
	for _, f := range loadFindings(t) {
		alerts = append(alerts, AlertFor(f, o, testNow))
	}
	got, err := json.MarshalIndent(alerts, "", "  ")
	require.NoError(t, err)
	got = append(got, '\n')
	path := filepath.Join("testdata", "alerts.golden.json")
	if *updateGolden {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(got))
}

func TestAlertForLabels(t *testing.T) {
	testNow := mustTime(t, testNowRFC3339)
	tests := []struct {
		kind      detect.Kind
		alertname string
		cohort    string
		severity  string
	}{
		{detect.KindPretrainRegression, "PretrainRegression", "pretrain", "warning"},
		{detect.KindSharedDataSpillover, "PretrainSharedDataSpillover", "pretrain", "critical"},
		{detect.KindPretrainLeak, "PretrainLeak", "pretrain", "critical"},
		{detect.KindTrainRegression, "TrainRegression", "train", "warning"},
		{detect.KindWikiAnomaly, "WikiAnomaly", "wiki", "info"},
		{detect.Kind("future-kind"), "DetectorFinding", "", "warning"},
	}
	require.Len(t, detect.Kinds, len(tests)-1, "a new kind needs an alertname and a cohort")
	for _, tc := range tests {
		t.Run(string(tc.kind), func(t *testing.T) {
			f := detect.Finding{ID: "id-1", Kind: tc.kind, State: detect.StateFiring, Fingerprint: "abcd", Wikis: []string{"testwiki"}}
			a := AlertFor(f, NotifierOptions{}, testNow)
			want := models.LabelSet{
				"alertname":   tc.alertname,
				"severity":    tc.severity,
				"kind":        string(tc.kind),
				"finding_id":  "id-1",
				"fingerprint": "abcd",
			}
			if tc.kind == detect.KindWikiAnomaly {
				// Only a wiki set that cannot grow while firing is identity.
				want["wikis"] = "testwiki"
			}
			if tc.cohort != "" {
				want["cohort"] = tc.cohort
			}
			require.Equal(t, want, a.Labels)
			require.Equal(t, "https://wikitech.wikimedia.org/wiki/Pretrain/Detector#"+string(tc.kind), a.Annotations[annRunbookURL])
			require.Empty(t, a.GeneratorURL, "no ExternalURL, no generatorURL")
		})
	}
}

func TestAlertForWikisAndExtraLabels(t *testing.T) {
	testNow := mustTime(t, testNowRFC3339)
	tests := []struct {
		name      string
		wikis     []string
		extra     map[string]string
		wantLabel string // "" = no wikis label
		wantAnn   string
		wantExtra map[string]string
	}{
		{name: "one", wikis: []string{"testwiki"}, wantLabel: "testwiki", wantAnn: "testwiki"},
		{name: "three sorted, deduplicated", wikis: []string{"zhwiki", "dewiki", "zhwiki", "arwiki"}, wantLabel: "arwiki,dewiki,zhwiki", wantAnn: "zhwiki,dewiki,zhwiki,arwiki"},
		{name: "four: annotation only", wikis: []string{"a", "b", "c", "d"}, wantAnn: "a,b,c,d"},
		{name: "none", wikis: nil},
		{
			name:      "extra labels, reserved and invalid ones ignored",
			wikis:     []string{"testwiki"},
			extra:     map[string]string{"replay": "true", "severity": "page", "bad-name": "x", "__meta": "x", "empty": "", "dc": "eqiad"},
			wantLabel: "testwiki",
			wantAnn:   "testwiki",
			wantExtra: map[string]string{"replay": "true", "dc": "eqiad"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := detect.Finding{ID: "x", Kind: detect.KindWikiAnomaly, State: detect.StateFiring, Wikis: tc.wikis}
			a := AlertFor(f, NotifierOptions{ExtraLabels: tc.extra}, testNow)
			got, ok := a.Labels[labelWikis]
			require.Equal(t, tc.wantLabel != "", ok)
			require.Equal(t, tc.wantLabel, got)
			require.Equal(t, tc.wantAnn, a.Annotations[annWikis])
			require.Equal(t, "info", a.Labels[labelSeverity])
			for k, v := range tc.wantExtra {
				require.Equal(t, v, a.Labels[k])
			}
			wantLen := 5 + len(tc.wantExtra) // alertname severity kind cohort finding_id
			if ok {
				wantLen++
			}
			require.Len(t, a.Labels, wantLen, "labels: %v", a.Labels)
		})
	}
}

func TestAlertForWikisAnnotationTruncated(t *testing.T) {
	testNow := mustTime(t, testNowRFC3339)
	wikis := make([]string, 900)
	for i := range wikis {
		wikis[i] = "wiki" + strings.Repeat("x", i%7) + "wiki"
	}
	a := AlertFor(detect.Finding{ID: "x", Kind: detect.KindSharedDataSpillover, State: detect.StateFiring, Wikis: wikis}, NotifierOptions{}, testNow)
	ann := a.Annotations[annWikis]
	require.LessOrEqual(t, len(ann), maxWikisAnn)
	require.Contains(t, ann, "more)")
	require.True(t, strings.HasPrefix(ann, wikis[0]+","+wikis[1]+","))
	shown := strings.Count(strings.Split(ann, " ")[0], ",") + 1
	require.Contains(t, ann, "(+"+strconv.Itoa(len(wikis)-shown)+" more)", "the count of what was left out is right")
	_, ok := a.Labels[labelWikis]
	require.False(t, ok)
}

func TestAlertForTimes(t *testing.T) {
	testNow := mustTime(t, testNowRFC3339)
	started := testNow.Add(-time.Hour)
	resolved := testNow.Add(-10 * time.Minute)
	future := testNow.Add(time.Hour)
	tests := []struct {
		name       string
		f          detect.Finding
		resend     time.Duration
		wantStarts time.Time
		wantEnds   time.Time
	}{
		{
			name:       "firing: EndsAt = now + 4 × resend",
			f:          detect.Finding{State: detect.StateFiring, StartedAt: started},
			wantStarts: started, wantEnds: testNow.Add(4 * time.Minute),
		},
		{
			name:       "firing, resend 30s",
			f:          detect.Finding{State: detect.StateFiring, StartedAt: started},
			resend:     30 * time.Second,
			wantStarts: started, wantEnds: testNow.Add(2 * time.Minute),
		},
		{
			name:       "pending is mapped like firing",
			f:          detect.Finding{State: detect.StatePending, StartedAt: started},
			wantStarts: started, wantEnds: testNow.Add(4 * time.Minute),
		},
		{
			name:       "resolved: EndsAt = resolve time",
			f:          detect.Finding{State: detect.StateResolved, StartedAt: started, ResolvedAt: &resolved},
			wantStarts: started, wantEnds: resolved,
		},
		{
			name:       "resolved without a time: now",
			f:          detect.Finding{State: detect.StateResolved, StartedAt: started},
			wantStarts: started, wantEnds: testNow,
		},
		{
			name:       "no onset: detection time",
			f:          detect.Finding{State: detect.StateFiring, DetectedAt: started.Add(time.Minute)},
			wantStarts: started.Add(time.Minute), wantEnds: testNow.Add(4 * time.Minute),
		},
		{
			name:       "no times at all: now",
			f:          detect.Finding{State: detect.StateFiring},
			wantStarts: testNow, wantEnds: testNow.Add(4 * time.Minute),
		},
		{
			name:       "onset after the end (clock skew): pulled back so Alertmanager accepts it",
			f:          detect.Finding{State: detect.StateFiring, StartedAt: future},
			wantStarts: testNow, wantEnds: testNow.Add(4 * time.Minute),
		},
		{
			name:       "resolved before its onset: StartsAt = EndsAt",
			f:          detect.Finding{State: detect.StateResolved, StartedAt: future, ResolvedAt: &resolved},
			wantStarts: resolved, wantEnds: resolved,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.ID, tc.f.Kind = "t", detect.KindPretrainRegression
			a := AlertFor(tc.f, NotifierOptions{ResendDelay: tc.resend}, testNow)
			require.Equal(t, tc.wantStarts, time.Time(a.StartsAt).UTC())
			require.Equal(t, tc.wantEnds, time.Time(a.EndsAt).UTC())
			require.False(t, time.Time(a.EndsAt).Before(time.Time(a.StartsAt)))
		})
	}
}

func TestAlertForAnnotations(t *testing.T) {
	testNow := mustTime(t, testNowRFC3339)
	fs := loadFindings(t)
	spill := fs[0]
	a := AlertFor(spill, NotifierOptions{ExternalURL: "https://detector.example.org", DashboardURL: "https://grafana.example/d/x?kind=<kind>"}, testNow)
	require.Equal(t, "https://detector.example.org/findings/spill-3f9a1c0e52d7b4a8", string(a.GeneratorURL))
	require.Equal(t, spill.Summary, a.Annotations[annSummary])
	require.Equal(t, "pretrain 1.47.0-alpha at 2026-03-04T09:58:00Z (mwversion)", a.Annotations[annDeploy])
	require.Equal(t, "s3 via includes/libs/rdbms/database/Database.php", a.Annotations[annSharedData])
	require.Equal(t, "2026-03-04T10:02:00Z", a.Annotations[annStartedAt])
	require.Equal(t, "2026-03-04T10:05:10Z", a.Annotations[annDetectedAt])
	require.Equal(t, "https://grafana.example/d/x?kind=shared-data-spillover", a.Annotations[annDashboard])
	require.Equal(t, "enwiktionary,frwikisource,testwiki,eswikibooks,nlwikivoyage", a.Annotations[annWikis])
	require.Equal(t, `Wikimedia\Rdbms\DBQueryError`, a.Annotations[annExceptionClass])
	// The exemplar's line breaks become spaces: one line in any receiver.
	require.True(t, strings.HasPrefix(a.Annotations[annExemplar], "[aZ3x0kCsIH4AAAAAAAAB] /w/index.php"))
	require.NotContains(t, a.Annotations[annExemplar], "\n")
	require.Contains(t, a.Annotations[annExemplar], "(db1234) Function: MediaWiki")

	d := a.Annotations[annDescription]
	for _, want := range []string{
		"Cohort since onset: 412 errors / 1830000 requests (0.0225%).",
		"Control since onset: 3 errors / 2210000 requests (0.000136%).",
		"Cohort before onset: 2 errors / 1790000 requests (0.000112%).",
		"Rate ratio cohort/control: 166 (baseline ratio 1.1).",
		"Test poisson-rate-ratio: p-value 1.2e-41, e-value 3.4e+18, alpha 0.0002.",
		"Distinct requests: 398.",
		"Top wikis: enwiktionary 190 errors / 800000 requests (0.0238%), frwikisource 81 errors / 120000 requests (0.0675%), eswikibooks 40 errors.",
		"Versions: 1.46.0-wmf.17.",
		`Exception class: Wikimedia\Rdbms\DBQueryError.`,
	} {
		require.Contains(t, d, want)
	}
	require.NotContains(t, d, "Insufficient")

	// A new fingerprint with no control errors: the ratio is unbounded and
	// the description says so, with its lower bound.
	unbounded := spill
	unbounded.Evidence.RateRatio, unbounded.Evidence.RateRatioLower, unbounded.Evidence.BaselineRatio = 0, 12.25, 0
	ud := AlertFor(unbounded, NotifierOptions{}, testNow).Annotations[annDescription]
	require.Contains(t, ud, "Rate ratio cohort/control: unbounded (no control errors), at least 12.2 with 95% confidence.")

	// The attribution: the code test, the margin and the candidates weighed
	// are in the description, so the alert says why this cause and not another.
	attributed := spill
	attributed.Evidence.Code = &detect.CodeTest{Scope: "train-served wikis of s3", K: 40, RP: 9000, N: 0, RT: 800000, Lo: 31.5, Verdict: "pretrain-specific"}
	attributed.Evidence.Margin = "the Pretrain deploy fits; the section incident on s3 does not (code test)"
	attributed.Evidence.Candidates = []detect.Candidate{
		{Cause: "pretrain-deploy", Name: "1.47.0-alpha", Evidence: "onset 4m after", Fits: true},
		{Cause: "section-incident", Name: "s3", Evidence: "no infrastructure fingerprint rose", Fits: false},
	}
	ad := AlertFor(attributed, NotifierOptions{}, testNow).Annotations[annDescription]
	for _, want := range []string{
		"Code test in train-served wikis of s3: Pretrain-served 40 errors / 9000 requests (0.444%) against train-served 0 errors / 800000 requests (0%); ratio unbounded, 95% [31.5, unbounded]; pretrain-specific.",
		"Attribution: the Pretrain deploy fits; the section incident on s3 does not (code test)",
		"Candidate pretrain-deploy 1.47.0-alpha (fits): onset 4m after",
		"Candidate section-incident s3 (does not fit): no infrastructure fingerprint rose",
	} {
		require.Contains(t, ad, want)
	}
	require.NotContains(t, d, "Code test", "no code test, no line")

	anomaly := fs[4]
	d = AlertFor(anomaly, NotifierOptions{}, testNow).Annotations[annDescription]
	require.True(t, strings.HasPrefix(d, "Insufficient evidence:"), d)
	require.Contains(t, d, "Note: no deploy in the window; could be a bot")
	require.Contains(t, d, "Test sequential-mixture: e-value 250, alpha 0.01.")

	resolved := fs[2]
	ra := AlertFor(resolved, NotifierOptions{}, testNow)
	require.Equal(t, "2026-03-04T12:40:00Z", ra.Annotations[annResolvedAt])
	_, ok := AlertFor(spill, NotifierOptions{}, testNow).Annotations[annResolvedAt]
	require.False(t, ok)

	train := fs[3]
	require.Equal(t, "train group1 1.46.0-wmf.18 at 2026-03-04T12:58:00Z (scap)", AlertFor(train, NotifierOptions{}, testNow).Annotations[annDeploy])
}

// TestAlertForUntrustedContent feeds hostile event content through the
// mapping: label names never come from it, and every value is valid UTF-8,
// free of control characters, bounded, and carried as text (not escaped,
// not interpreted).
func TestAlertForUntrustedContent(t *testing.T) {
	testNow := mustTime(t, testNowRFC3339)
	const script = `<script>alert(1)</script>`
	huge := strings.Repeat("é", 10000) // 2 bytes per rune: cuts must respect runes
	nasty := "a\x00b\x1b[31mred\x7f\u202Eevil\u2066\r\nnext\xff\xfeend"
	f := detect.Finding{
		ID:                "id\x00" + huge,
		Kind:              detect.KindSharedDataSpillover,
		Severity:          "critical\n",
		State:             detect.StateFiring,
		Summary:           script + huge,
		Wikis:             []string{script, "enwiki\x07", "dewiki=\"x\",evil=\"y\""},
		NormalizedMessage: "Error: " + script + " " + nasty,
		ExceptionClass:    nasty,
		Channel:           huge,
		Fingerprint:       "ff" + nasty,
		Deploy:            &detect.Deploy{Scope: "pretrain", Version: script, At: testNow},
		Evidence: detect.Evidence{
			Test:       nasty,
			Exemplar:   "Error: " + script + "\n" + huge,
			SharedData: nasty,
			Frame:      huge,
			Note:       huge,
			TopWikis:   []detect.WikiCount{{Wiki: script, Errors: 1}},
			Versions:   []string{huge},
		},
	}
	a := AlertFor(f, NotifierOptions{ExtraLabels: map[string]string{"replay": "true"}}, testNow)

	allowed := []string{labelAlertname, labelSeverity, labelKind, labelCohort, labelFindingID, labelFingerprint, labelWikis, "replay"}
	for name, v := range a.Labels {
		require.Contains(t, allowed, name, "label name from content")
		require.LessOrEqual(t, len(v), maxLabelValue, name)
		requireSafe(t, name, v)
	}
	for name, v := range a.Annotations {
		require.LessOrEqual(t, len(v), maxDescription, name)
		requireSafe(t, name, v)
	}
	require.Equal(t, "critical", a.Labels[labelSeverity])
	require.NotContains(t, a.Labels, labelWikis, "a spillover's growing wiki set is no label")
	require.Equal(t, script+`,enwiki,dewiki="x",evil="y"`, a.Annotations[annWikis], "a value is only a value")
	require.LessOrEqual(t, len(a.Annotations[annExemplar]), maxExemplar)
	require.True(t, strings.HasSuffix(a.Annotations[annExemplar], redact.Ellipsis))
	require.True(t, strings.HasPrefix(a.Annotations[annExemplar], "Error: "+script+" éé"), "markup stays as literal text")
	require.True(t, strings.HasPrefix(a.Annotations[annSummary], script))
	require.Equal(t, "ab[31mredevil  next\uFFFDend", a.Annotations[annExceptionClass])

	// The wire form round-trips to the same text: Go's encoder escapes <
	// and > as \u003c and \u003e, which any JSON decoder turns back.
	b, err := json.Marshal(models.PostableAlerts{a})
	require.NoError(t, err)
	require.NotContains(t, string(b), "<script>")
	var back models.PostableAlerts
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, a.Annotations, back[0].Annotations)
	require.Equal(t, a.Labels, back[0].Labels)
}

func requireSafe(t *testing.T, name, v string) {
	t.Helper()
	require.True(t, utf8.ValidString(v), "%s: invalid UTF-8", name)
	for _, r := range v {
		if name == annDescription && r == '\n' {
			continue
		}
		require.False(t, unicode.IsControl(r), "%s: control character %U", name, r)
		require.False(t, redact.IsBidiControl(r), "%s: bidi control %U", name, r)
	}
}

func TestValidLabelName(t *testing.T) {
	for name, want := range map[string]bool{
		"replay": true, "_x": true, "dc2": true, "A_b": true,
		"": false, "2dc": false, "bad-name": false, "__meta": false, "é": false, "a b": false, "a.b": false,
	} {
		require.Equal(t, want, validLabelName(name), name)
	}
	for _, name := range []string{labelAlertname, labelSeverity, labelKind, labelCohort, labelFindingID, labelFingerprint, labelWikis} {
		require.True(t, reservedLabel(name), name)
	}
	require.False(t, reservedLabel("replay"))
}
