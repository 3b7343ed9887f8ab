package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAlertingLabels(t *testing.T) {
	c, err := Parse(nil)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"team": "releng"}, c.Alerting.Labels(), "the default team")

	c, err = Parse([]byte("alerting:\n  team: sre\n  external_labels: {site: eqiad, source: pretrain-detector}\n"))
	require.NoError(t, err)
	require.Equal(t, map[string]string{"team": "sre", "site": "eqiad", "source": "pretrain-detector"}, c.Alerting.Labels())

	for _, tc := range []struct{ yaml, want string }{
		{"alerting: {team: ''}", "field alerting.team: must be non-empty"},
		{"alerting: {external_labels: {team: x}}", "field alerting.external_labels.team: set alerting.team instead"},
		{"alerting: {external_labels: {severity: page}}", "field alerting.external_labels.severity: the finding sets this label"},
		{"alerting: {external_labels: {replay: 'true'}}", "field alerting.external_labels.replay: the finding sets this label"},
		{"alerting: {external_labels: {2site: x}}", "field alerting.external_labels.2site: not a label name"},
		{"alerting: {external_labels: {__name__: x}}", "field alerting.external_labels.__name__: not a label name"},
		{"alerting: {external_labels: {site: ''}}", "field alerting.external_labels.site: the value must be non-empty"},
		{"alerting: {external_labels: {site: \"a\\nb\"}}", "field alerting.external_labels.site: the value must be non-empty printable"},
		{"alerting: {external_labels: {site: " + strings.Repeat("x", 257) + "}}", "field alerting.external_labels.site: the value"},
	} {
		_, err := Parse([]byte(tc.yaml))
		require.ErrorContains(t, err, tc.want, tc.yaml)
	}
}
