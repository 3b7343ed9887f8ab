package deploy_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
)

// TestFindingAlertLabels: a finding alert carries the team label and the
// external labels of the configuration, so Alertmanager routes it like the
// rules' alerts (team and severity); config.FindingLabels, which
// alerting.external_labels may not use, are exactly the labels package
// alert sets from a finding (and replay).
func TestFindingAlertLabels(t *testing.T) {
	cfg, err := config.Parse([]byte("alerting: {external_labels: {site: eqiad}}"))
	require.NoError(t, err)
	f := detect.Finding{
		ID: "f1", Kind: detect.KindWikiAnomaly, State: detect.StateFiring, Fingerprint: "abc",
		Wikis: []string{"enwiki"}, Summary: "s", DetectedAt: time.Unix(1e9, 0),
	}
	opts := alert.NotifierOptions{URLs: []string{"http://am.example:9093"}, ExtraLabels: cfg.Alerting.Labels()}
	a := alert.AlertFor(f, opts, time.Unix(1e9, 0))
	require.Equal(t, "releng", a.Labels["team"])
	require.Equal(t, "eqiad", a.Labels["site"])
	require.True(t, slices.Contains([]string{"page", "critical", "warning", "task", "info"}, a.Labels["severity"]))
	for name := range a.Labels {
		if name == "team" || name == "site" {
			continue
		}
		require.Contains(t, config.FindingLabels, name, "alert sets %s from the finding: config.FindingLabels must list it", name)
	}
	for _, name := range config.FindingLabels {
		if name == "replay" {
			continue // set by a replay, through ExtraLabels
		}
		_, err := alert.NewNotifier(alert.NotifierOptions{URLs: opts.URLs, ExtraLabels: map[string]string{name: "x"}}, nil, nil)
		require.Error(t, err, "alert accepts %s as an extra label: it is not a finding label", name)
	}
}

// TestAnnotatedExampleLoads: deploy/detector.yml, the annotated example of
// every key, is a configuration the detector accepts.
func TestAnnotatedExampleLoads(t *testing.T) {
	cfg, err := config.Load("detector.yml")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"team": "releng", "site": "eqiad"}, cfg.Alerting.Labels())
}
