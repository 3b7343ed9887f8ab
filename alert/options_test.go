package alert

import (
	"testing"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
)

// optionsFrom builds the options from a configuration as the detector's
// commands do.
func optionsFrom(cfg config.Config) NotifierOptions {
	return NotifierOptions{
		ResendDelay: time.Duration(cfg.Alerting.ResendDelay),
		RunbookURL:  cfg.Alerting.RunbookURL, DashboardURL: cfg.Alerting.DashboardURL,
		ExtraLabels: cfg.Alerting.Labels(),
	}
}

// TestDefaultsAreTheConfigurations: the options that the configuration
// also sets default to config.Default()'s values, so the alerts of a caller
// that leaves them zero are those the detector sends with its default
// configuration.
func TestDefaultsAreTheConfigurations(t *testing.T) {
	def := config.Default()
	o := NotifierOptions{}.withDefaults()
	require.Equal(t, time.Duration(def.Alerting.ResendDelay), o.ResendDelay)
	require.Equal(t, def.Alerting.RunbookURL, o.RunbookURL)
	require.Equal(t, config.DefaultAlertmanagerTimeout, o.Timeout)
	sets, _ := NotifierOptions{URLs: []string{testAM1}, Sets: []AlertmanagerSet{{URLs: []string{testAM2}}}}.withDefaults().sendSets()
	require.Len(t, sets, 2)
	for _, s := range sets {
		require.Equal(t, config.DefaultAlertmanagerTimeout, s.Timeout)
	}

	now := mustTime(t, testNowRFC3339)
	zero := NotifierOptions{ExtraLabels: def.Alerting.Labels()}
	for _, f := range loadFindings(t) {
		require.Equal(t, AlertFor(f, zero, now), AlertFor(f, optionsFrom(def), now), f.ID)
	}
}

// TestConfiguredOptionsWin: a configured value is used, not the default.
func TestConfiguredOptionsWin(t *testing.T) {
	cfg, err := config.Parse([]byte("alerting: {resend_delay: 2m, runbook_url: 'https://runbooks.example/<kind>'}"))
	require.NoError(t, err)
	now := mustTime(t, testNowRFC3339)
	for _, f := range loadFindings(t) {
		if f.State == detect.StateFiring {
			a := AlertFor(f, optionsFrom(cfg), now)
			require.Equal(t, strfmt.DateTime(now.Add(8*time.Minute).UTC()), a.EndsAt, f.ID)
			require.Equal(t, "https://runbooks.example/"+string(f.Kind), a.Annotations[annRunbookURL], f.ID)
			return
		}
	}
	t.Fatal("no firing finding in testdata/findings.json")
}
