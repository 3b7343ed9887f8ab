package deploy_test

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
)

// TestRunbookCoversEveryKindAndAlert: alerts link to the runbook by kind
// (alerting.runbook_url's <kind>) and operators look rules up by name, so
// each needs a section; a kind or rule added without one fails here.
func TestRunbookCoversEveryKindAndAlert(t *testing.T) {
	b, err := os.ReadFile("RUNBOOK.md")
	require.NoError(t, err)
	sections := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "### "); ok {
			sections[strings.TrimSpace(name)]++
		}
	}
	require.NoError(t, sc.Err())
	for _, k := range detect.Kinds {
		require.Equal(t, 1, sections[string(k)], "one runbook section for finding kind %s", k)
	}
	for _, name := range alertNames(t) {
		require.Equal(t, 1, sections[name], "one runbook section for alert %s", name)
	}
	require.Len(t, sections, len(detect.Kinds)+len(alertNames(t)), "no section for something that does not exist: %v", sections)
	require.True(t, strings.HasSuffix(config.Default().Alerting.RunbookURL, "#<kind>"),
		"the default runbook URL points at the kind's section: %s", config.Default().Alerting.RunbookURL)
}
