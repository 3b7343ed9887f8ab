// Package deploy_test checks the deployment material in deploy/ with the
// tools that consume it: promtool for the alerting rules (deploy/alerts),
// amtool for the Alertmanager routing, helm for the chart
// (deploy/helm/pretrain-detector), and the detector itself for the
// dashboard's queries (deploy/grafana). The tools are looked up in $PATH,
// then in $(go env GOBIN) and $(go env GOPATH)/bin; without them the tests
// skip, unless DETECTOR_REQUIRE_PROMTOOL=1 (promtool),
// DETECTOR_REQUIRE_ALERTMANAGER=1 (amtool, of the same module as the
// alertmanager binary) or DETECTOR_REQUIRE_HELM=1 (helm), as in CI, when
// they fail. Install with
//
//	go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0
//	go install github.com/prometheus/alertmanager/cmd/amtool@v0.31.1
//	go install helm.sh/helm/v3/cmd/helm@v3.22.0
package deploy_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/wikimedia/pretrain-detector/alert/amtest"
)

const (
	alertsDir = "alerts"
	routeFile = "alertmanager-route.yml"
	// runbookBase is where deploy/RUNBOOK.md is published; an alert's
	// runbook annotation is this plus "#" and the alert's section.
	runbookBase = "https://wikitech.wikimedia.org/wiki/Pretrain/Detector"
)

// severities are the severity label values Wikimedia's Alertmanager routes
// on, from most to least urgent.
var severities = []string{"page", "critical", "warning", "task"}

func promtool(t *testing.T) string {
	return amtest.Tool(t, "promtool", "DETECTOR_REQUIRE_PROMTOOL", "go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0")
}

func amtool(t *testing.T) string {
	return amtest.Tool(t, "amtool", "DETECTOR_REQUIRE_ALERTMANAGER", "go install github.com/prometheus/alertmanager/cmd/amtool@v0.31.1")
}

// run runs a tool and returns its combined output, failing the test on a
// non-zero exit.
func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", filepath.Base(bin), strings.Join(args, " "), out)
	return string(out)
}

// ruleFile is one operations/alerts-style file: team-<team>/<name>.yaml.
type ruleFile struct {
	Path   string // relative to deploy/
	Team   string // from the directory name
	Header map[string]string
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func (f ruleFile) testPath() string { return strings.TrimSuffix(f.Path, ".yaml") + "_test.yaml" }

// loadRuleFiles reads every rule file under dir (not the _test.yaml ones).
func loadRuleFiles(t *testing.T, dir string) []ruleFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*", "*.yaml"))
	require.NoError(t, err)
	var files []ruleFile
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.yaml") {
			continue
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		f := ruleFile{Path: p, Header: map[string]string{}}
		f.Team, _ = strings.CutPrefix(filepath.Base(filepath.Dir(p)), "team-")
		// operations/alerts reads the deploy-* headers from the leading
		// comment lines.
		for line := range strings.Lines(string(b)) {
			if !strings.HasPrefix(line, "#") {
				break
			}
			if k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "#")), ":"); ok && strings.HasPrefix(k, "deploy-") {
				f.Header[k] = strings.TrimSpace(v)
			}
		}
		require.NoError(t, yaml.Unmarshal(b, &f), p)
		files = append(files, f)
	}
	return files
}

// alertNames lists every alert of deploy/alerts, each once.
func alertNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, f := range loadRuleFiles(t, alertsDir) {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				require.False(t, slices.Contains(names, r.Alert), "alert %s defined twice", r.Alert)
				names = append(names, r.Alert)
			}
		}
	}
	require.NotEmpty(t, names)
	return names
}

// ruleTests is the part of a promtool test file the lint reads.
type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// dashboardPanels returns the uid of deploy/grafana's dashboard and its
// panel ids, which the dashboard annotations link to.
type dashboardRef struct {
	UID    string
	Panels map[int]bool
}

// lintRules checks the house style of operations/alerts on every rule file
// under dir and returns what is wrong, one line per problem. dash is the
// dashboard the annotations must link to.
func lintRules(t *testing.T, dir string, dash dashboardRef) []string {
	t.Helper()
	var problems []string
	bad := func(f ruleFile, alert, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: %s: %s", f.Path, alert, fmt.Sprintf(format, args...)))
	}
	files := loadRuleFiles(t, dir)
	if len(files) == 0 {
		problems = append(problems, dir+": no rule file")
	}
	for _, f := range files {
		if !strings.HasPrefix(filepath.Base(filepath.Dir(f.Path)), "team-") {
			bad(f, "-", "not in a team-<team> directory")
		}
		for _, h := range []string{"deploy-tag", "deploy-site"} {
			if f.Header[h] == "" {
				bad(f, "-", "no '# %s:' header", h)
			}
		}
		fires := map[string]bool{}
		b, err := os.ReadFile(f.testPath())
		if err != nil {
			bad(f, "-", "no test file beside it: %v", err)
		} else {
			var tests ruleTests
			require.NoError(t, yaml.Unmarshal(b, &tests), f.testPath())
			if !slices.Equal(tests.RuleFiles, []string{filepath.Base(f.Path)}) {
				bad(f, "-", "%s tests %v, not this file", f.testPath(), tests.RuleFiles)
			}
			for _, tc := range tests.Tests {
				for _, a := range tc.AlertRuleTest {
					if len(a.ExpAlerts) > 0 {
						fires[a.Alertname] = true
					}
				}
			}
		}
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue // a recording rule
				}
				if r.Labels["team"] != f.Team {
					bad(f, r.Alert, "label team is %q, want the directory's %q", r.Labels["team"], f.Team)
				}
				if !slices.Contains(severities, r.Labels["severity"]) {
					bad(f, r.Alert, "label severity is %q, want one of %v", r.Labels["severity"], severities)
				}
				for _, a := range []string{"summary", "description", "runbook", "dashboard"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						bad(f, r.Alert, "no %s annotation", a)
					}
				}
				if rb := r.Annotations["runbook"]; rb != "" && rb != runbookBase+"#"+r.Alert {
					bad(f, r.Alert, "runbook %q, want its RUNBOOK.md section %s#%s", rb, runbookBase, r.Alert)
				}
				if d := r.Annotations["dashboard"]; d != "" {
					if msg := checkDashboardLink(d, dash); msg != "" {
						bad(f, r.Alert, "dashboard: %s", msg)
					}
				}
				if !fires[r.Alert] {
					bad(f, r.Alert, "no test case in %s where it fires", f.testPath())
				}
			}
		}
	}
	return problems
}

var viewPanelRe = regexp.MustCompile(`[?&]viewPanel=(\d+)`)

// checkDashboardLink says what is wrong with a dashboard annotation, or "".
func checkDashboardLink(link string, dash dashboardRef) string {
	want := "https://grafana.wikimedia.org/d/" + dash.UID + "/"
	if !strings.HasPrefix(link, want) {
		return fmt.Sprintf("%q does not link to the detector's dashboard %s", link, want)
	}
	// Templates ({{ $externalLabels.site }}) are not URL syntax; the rest is.
	if _, err := url.Parse(regexp.MustCompile(`\{\{[^}]*\}\}`).ReplaceAllString(link, "x")); err != nil {
		return err.Error()
	}
	if m := viewPanelRe.FindStringSubmatch(link); m != nil {
		id, _ := strconv.Atoi(m[1])
		if !dash.Panels[id] {
			return fmt.Sprintf("viewPanel=%d is no panel of the dashboard", id)
		}
	}
	return ""
}

func TestAlertRulesHouseStyle(t *testing.T) {
	problems := lintRules(t, alertsDir, loadDashboardRef(t))
	require.Empty(t, problems, "\n"+strings.Join(problems, "\n"))
}

// TestAlertRulesLintCatchesMistakes runs the lint over a copy of the rules
// with one mistake each: the lint that passes the real rules must fail
// each of these.
func TestAlertRulesLintCatchesMistakes(t *testing.T) {
	dash := loadDashboardRef(t)
	src := loadRuleFiles(t, alertsDir)[0]
	orig, err := os.ReadFile(src.Path)
	require.NoError(t, err)
	tests, err := os.ReadFile(src.testPath())
	require.NoError(t, err)
	first := src.Groups[0].Rules[0].Alert
	for _, tc := range []struct {
		name, old, new, want string
		dropTests            bool
	}{
		{name: "no team label", old: "          team: releng\n", new: "", want: "label team"},
		{name: "unrouted severity", old: "          severity: critical\n", new: "          severity: info\n", want: "label severity"},
		{name: "no summary", old: "          summary: ", new: "          note: ", want: "no summary annotation"},
		{name: "no description", old: "          description: ", new: "          details: ", want: "no description annotation"},
		{name: "no runbook", old: "          runbook: ", new: "          runbook_url: ", want: "no runbook annotation"},
		{name: "no dashboard", old: "          dashboard: ", new: "          grafana: ", want: "no dashboard annotation"},
		{name: "wrong runbook anchor", old: "#" + first + "\"", new: "#Elsewhere\"", want: "RUNBOOK.md section"},
		{name: "no such panel", old: "viewPanel=4\"", new: "viewPanel=999\"", want: "viewPanel=999"},
		{name: "no deploy-site", old: "# deploy-site:", new: "# site:", want: "deploy-site"},
		{name: "an alert without a test case", old: "  - alert: " + first + "\n", new: "  - alert: " + first + "Twin\n", want: first + "Twin: no test case"},
		{name: "no test file", dropTests: true, want: "no test file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), filepath.Base(filepath.Dir(src.Path)))
			require.NoError(t, os.MkdirAll(dir, 0o755))
			body := string(orig)
			if tc.old != "" {
				require.Contains(t, body, tc.old)
				body = strings.Replace(body, tc.old, tc.new, 1)
			}
			require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(src.Path)), []byte(body), 0o644))
			if !tc.dropTests {
				require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(src.testPath())), tests, 0o644))
			}
			problems := lintRules(t, filepath.Dir(dir), dash)
			require.NotEmpty(t, problems)
			require.Contains(t, strings.Join(problems, "\n"), tc.want)
		})
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	bin := promtool(t)
	for _, f := range loadRuleFiles(t, alertsDir) {
		n := 0
		for _, g := range f.Groups {
			n += len(g.Rules)
		}
		out := run(t, bin, "check", "rules", "--lint=all", "--lint-fatal", f.Path)
		require.Contains(t, out, "SUCCESS: "+strconv.Itoa(n)+" rules found", f.Path)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	bin := promtool(t)
	for _, f := range loadRuleFiles(t, alertsDir) {
		out := run(t, bin, "test", "rules", f.testPath())
		require.Contains(t, out, "SUCCESS", f.testPath())
	}
}

func TestAmtoolCheckConfig(t *testing.T) {
	out := run(t, amtool(t), "check-config", routeFile)
	require.Contains(t, out, "SUCCESS")
}

// TestAlertmanagerRoutes sends each alertname the detector emits (package
// alert's contract) through the example routing tree.
func TestAlertmanagerRoutes(t *testing.T) {
	bin := amtool(t)
	for _, tc := range []struct {
		labels []string
		want   string
	}{
		{[]string{"alertname=PretrainSharedDataSpillover", "severity=critical", "cohort=pretrain", "kind=shared-data-spillover"}, "releng-page"},
		{[]string{"alertname=PretrainLeak", "severity=critical", "cohort=pretrain", "kind=pretrain-leak"}, "releng-page"},
		{[]string{"alertname=PretrainRegression", "severity=warning", "cohort=pretrain", "kind=pretrain-regression"}, "releng-task"},
		{[]string{"alertname=TrainRegression", "severity=warning", "cohort=train", "kind=train-regression"}, "train-conductor"},
		{[]string{"alertname=WikiAnomaly", "severity=info", "cohort=wiki", "kind=wiki-anomaly"}, "default"},
		{[]string{"alertname=DetectorFinding", "severity=warning"}, "default"},
		// Replayed history goes to the receiver without notifications,
		// whatever it is: nothing replayed pages or opens a task.
		{[]string{"alertname=PretrainSharedDataSpillover", "severity=critical", "cohort=pretrain", "kind=shared-data-spillover", "replay=true"}, "replay"},
		{[]string{"alertname=PretrainLeak", "severity=critical", "cohort=pretrain", "kind=pretrain-leak", "replay=true"}, "replay"},
		{[]string{"alertname=PretrainRegression", "severity=warning", "cohort=pretrain", "kind=pretrain-regression", "replay=true"}, "replay"},
		{[]string{"alertname=TrainRegression", "severity=warning", "cohort=train", "kind=train-regression", "replay=true"}, "replay"},
		{[]string{"alertname=WikiAnomaly", "severity=info", "cohort=wiki", "kind=wiki-anomaly", "replay=true"}, "replay"},
		// replay="false" (or any other value) is live.
		{[]string{"alertname=PretrainSharedDataSpillover", "severity=critical", "replay=false"}, "releng-page"},
	} {
		t.Run(strings.Join(tc.labels, ","), func(t *testing.T) {
			args := append([]string{"config", "routes", "test", "--config.file=" + routeFile, "--verify.receivers=" + tc.want}, tc.labels...)
			out := run(t, bin, args...)
			require.Equal(t, tc.want, strings.TrimSpace(out))
		})
	}
}
