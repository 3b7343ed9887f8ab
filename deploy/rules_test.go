// Package deploy_test checks the deployment examples in deploy/ with the
// Prometheus ecosystem's own tools: promtool for the alerting rules, amtool
// for the Alertmanager routing. The tools are looked up in $PATH, then in
// $(go env GOBIN) and $(go env GOPATH)/bin; without them the tests skip,
// unless DETECTOR_REQUIRE_PROMTOOL=1 (promtool) or
// DETECTOR_REQUIRE_ALERTMANAGER=1 (amtool, of the same module as the
// alertmanager binary), as in CI, when they fail. Install with
//
//	go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0
//	go install github.com/prometheus/alertmanager/cmd/amtool@v0.31.1
package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
	rulesFile     = "prometheus-rules.yml"
	rulesTestFile = "testdata/prometheus-rules.test.yml"
	routeFile     = "alertmanager-route.yml"
)

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
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", filepath.Base(bin), strings.Join(args, " "), out)
	return string(out)
}

func TestPromtoolCheckRules(t *testing.T) {
	out := run(t, promtool(t), "check", "rules", "--lint=all", "--lint-fatal", rulesFile)
	require.Contains(t, out, "SUCCESS: "+strconv.Itoa(len(alertNames(t)))+" rules found")
}

func TestPromtoolTestRules(t *testing.T) {
	out := run(t, promtool(t), "test", "rules", rulesTestFile)
	require.Contains(t, out, "SUCCESS")
}

// TestEveryRuleIsTested requires, for each alert in the rules file, a unit
// test in which it fires: a rule nobody saw fire may never fire.
func TestEveryRuleIsTested(t *testing.T) {
	b, err := os.ReadFile(rulesTestFile)
	require.NoError(t, err)
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	require.NoError(t, yaml.Unmarshal(b, &tests))
	require.Equal(t, []string{"../" + rulesFile}, tests.RuleFiles)
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	for _, name := range alertNames(t) {
		require.True(t, fires[name], "no test in %s where %s fires", rulesTestFile, name)
	}
}

func alertNames(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &rules))
	var names []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "only alerting rules here")
			require.False(t, slices.Contains(names, r.Alert), "%s twice", r.Alert)
			names = append(names, r.Alert)
		}
	}
	require.NotEmpty(t, names)
	return names
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
