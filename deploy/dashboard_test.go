package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"gopkg.in/yaml.v3"
)

const dashboardFile = "grafana/pretrain-detector.json"

// dashboard is the part of Grafana's JSON model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string          `json:"name"`
			Datasource json.RawMessage `json:"datasource"`
			Expr       string          `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource json.RawMessage          `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d))
	return d
}

// allPanels flattens rows.
func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// queries returns every PromQL expression of the dashboard, each with where
// it is.
func (d dashboard) queries() map[string]string {
	q := map[string]string{}
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			q[fmt.Sprintf("panel %d %q %s", p.ID, p.Title, tg.RefID)] = tg.Expr
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			q["annotation "+a.Name] = a.Expr
		}
	}
	return q
}

func loadDashboardRef(t *testing.T) dashboardRef {
	t.Helper()
	d := loadDashboard(t)
	ref := dashboardRef{UID: d.UID, Panels: map[int]bool{}}
	for _, p := range d.allPanels() {
		ref.Panels[p.ID] = true
	}
	return ref
}

// TestDashboardModel checks what Grafana needs to import the dashboard and
// what the alert annotations link to.
func TestDashboardModel(t *testing.T) {
	d := loadDashboard(t)
	require.Equal(t, "pretrain-detector", d.UID, "the alerts' dashboard links use this uid")
	require.NotEmpty(t, d.Title)
	require.GreaterOrEqual(t, d.SchemaVersion, 36, "a schema version Grafana 9 and later import without migrating datasources")
	require.True(t, slices.ContainsFunc(d.Templating.List, func(v struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	}), "a datasource variable: the alerts link with var-datasource=<site> prometheus/k8s")
	ids := map[int]string{}
	graphs := 0
	for _, p := range d.allPanels() {
		require.Positive(t, p.ID, "panel %q has no id", p.Title)
		require.NotContains(t, ids, p.ID, "panel id %d used by %q and %q", p.ID, ids[p.ID], p.Title)
		ids[p.ID] = p.Title
		require.NotEmpty(t, p.Title, "panel %d", p.ID)
		require.Positive(t, p.GridPos.W, "panel %d has no gridPos", p.ID)
		if p.Type == "row" {
			continue
		}
		graphs++
		require.Contains(t, string(p.Datasource), "${datasource}", "panel %d follows the datasource variable", p.ID)
		require.NotEmpty(t, p.Targets, "panel %d %q queries nothing", p.ID, p.Title)
		for _, tg := range p.Targets {
			require.NotEmpty(t, tg.Expr, "panel %d target %s", p.ID, tg.RefID)
		}
	}
	require.GreaterOrEqual(t, graphs, 10)
	deploys := 0
	for _, a := range d.Annotations.List {
		if strings.Contains(a.Expr, "detector_window_last_deploy_timestamp_seconds") {
			deploys++
		}
	}
	require.Equal(t, 2, deploys, "Pretrain and train deploys are annotations")
}

// grafanaVars replaces Grafana's variables in a query with what Prometheus
// would see.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// TestDashboardQueriesParse runs every query of the dashboard through
// Prometheus's own parser (promtool check rules, as recording rules).
func TestDashboardQueriesParse(t *testing.T) {
	bin := promtool(t)
	d := loadDashboard(t)
	type rec struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rec
	for _, where := range slices.Sorted(mapsKeys(d.queries())) {
		expr := grafanaVars.Replace(d.queries()[where])
		require.NotContains(t, expr, "$", "%s: a Grafana variable the test does not know", where)
		rules = append(rules, rec{Record: fmt.Sprintf("dashboard:query_%d", len(rules)), Expr: expr})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	out := run(t, bin, "check", "rules", p)
	require.Contains(t, out, fmt.Sprintf("SUCCESS: %d rules found", len(rules)))
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// promqlNames returns the metric names a PromQL expression reads: the
// identifiers left after removing strings, label matchers, ranges, grouping
// clauses, function calls and keywords.
func promqlNames(expr string) []string {
	for _, re := range []string{`"(\\.|[^"\\])*"`, `'(\\.|[^'\\])*'`, `\{[^}]*\}`, `\[[^\]]*\]`,
		`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`, `\b\d[\d.]*([eE][+-]?\d+)?`} {
		expr = regexp.MustCompile(re).ReplaceAllString(expr, " ")
	}
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
	var names []string
	for _, m := range regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`).FindAllString(expr, -1) {
		if strings.HasSuffix(m, "(") || keywords[strings.ToLower(m)] {
			continue // a function or an aggregation
		}
		if !slices.Contains(names, m) {
			names = append(names, m)
		}
	}
	return names
}

func TestPromqlNames(t *testing.T) {
	require.Equal(t, []string{"a_total", "b_bucket"},
		promqlNames(`sum by (x, le) (rate(a_total{y="z{}"}[5m])) / on (x) group_left (w) histogram_quantile(0.9, b_bucket) > bool 1`))
	require.Equal(t, []string{"up"}, promqlNames(`absent(up{app="x"}) and on() time() > 1e6`))
}

// TestDashboardAndRulesUseExportedMetrics runs the daemon (`detector run`,
// built from this tree) over an in-process Kafka broker that `detector
// simulate` fills with a quarter of an hour of realistic traffic, with an
// Alertmanager that accepts everything; scrapes its /metrics once it is
// ready and has read the traffic; and checks that every metric a dashboard
// query or an alerting rule reads is one it exports. A renamed metric would
// otherwise leave an empty panel or a rule that can never fire.
func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	bin := detectorBinary(t)
	topics := []string{"k8s-mw-eqiad", "k8s-mw-codfw", "mediawiki.httpd.accesslog"}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topics...))
	require.NoError(t, err)
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ",")

	// Traffic that ended a minute ago, so warm-up (now − 2 h) reads it all.
	start := time.Now().Add(-16 * time.Minute).UTC().Truncate(time.Second)
	runTool(t, bin, "simulate", "--kafka.brokers="+brokers, "--scenario=quiet", "--duration=15m",
		"--start="+start.Format(time.RFC3339), "--log.level=warn")

	var alerts sync.Mutex
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		alerts.Lock()
		defer alerts.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	defer am.Close()

	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--kafka.brokers="+brokers, "--alertmanager.url="+am.URL,
		"--web.listen-address="+addr, "--log.level=warn")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()

	// Ready, and every simulated record read.
	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
		fams = scrape(t, "http://"+addr+"/metrics")
		lag := 0.0
		for _, m := range fams["detector_ingest_consumer_lag_records"].GetMetric() {
			lag += m.GetGauge().GetValue()
		}
		records := 0.0
		for _, m := range fams["detector_ingest_records_total"].GetMetric() {
			records += m.GetCounter().GetValue()
		}
		return records > 0 && lag == 0
	}, 3*time.Minute, 200*time.Millisecond, "daemon not ready with the traffic read; stderr:\n%s", &stderr)

	exported := map[string]bool{}
	for name, mf := range fams {
		exported[name] = true
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				exported[name+s] = true
			}
		case dto.MetricType_SUMMARY:
			for _, s := range []string{"_sum", "_count"} {
				exported[name+s] = true
			}
		}
	}
	uses := map[string]string{}
	for where, expr := range loadDashboard(t).queries() {
		for _, n := range promqlNames(grafanaVars.Replace(expr)) {
			uses[n] = "dashboard " + where
		}
	}
	for _, f := range loadRuleFiles(t, alertsDir) {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				for _, n := range promqlNames(r.Expr) {
					uses[n] = f.Path + " " + r.Alert
				}
			}
		}
	}
	// up is Prometheus's own series about the scrape.
	delete(uses, "up")
	require.Contains(t, uses, "detector_window_requests_total")
	for _, name := range slices.Sorted(mapsKeys(uses)) {
		require.True(t, exported[name], "%s reads %s, which the daemon does not export", uses[name], name)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bufio.NewReader(resp.Body))
	require.NoError(t, err)
	return fams
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// runTool runs bin to completion and returns its stdout, failing on a
// non-zero exit with its stderr.
func runTool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s %s: %s", filepath.Base(bin), strings.Join(args, " "), stderr.String())
	return string(out)
}

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// detectorBinary builds cmd/detector from this tree once per test run.
func detectorBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "deploy-test-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "detector")
		out, err := exec.Command("go", "build", "-o", buildBin, "../cmd/detector").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ../cmd/detector: %w\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return buildBin
}

// removeBuilt removes what detectorBinary built; TestMain calls it.
func removeBuilt() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}
