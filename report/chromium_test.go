package report

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/internal/browsertest"
)

// The report is checked in a real browser (package browsertest). Set
// DETECTOR_REPORT_SCREENSHOT=path.png to keep a screenshot of the sample
// report for a look; `go test -artifacts` keeps one too.
const screenshotEnv = "DETECTOR_REPORT_SCREENSHOT"

func TestReportInHeadlessChromium(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var b bytes.Buffer
	d := sampleData()
	require.NoError(t, Write(&b, d))
	require.NoError(t, os.WriteFile(page, b.Bytes(), 0o600))

	dom, log := browsertest.Run(t, "file://"+page, "--dump-dom")
	require.Empty(t, browsertest.PageErrors.FindAllString(log, -1), "page errors in the browser log:\n%s", log)
	// It renders: the DOM holds every finding, with its plot.
	for _, f := range d.Findings {
		require.Contains(t, dom, f.ID)
		require.Contains(t, dom, f.Summary[:20])
	}
	require.Equal(t, 3, strings.Count(dom, "<svg"), "the timeline and two plots")
	require.Equal(t, 2, strings.Count(dom, `class="l-cohort"`))
	require.Regexp(t, `<path class="l-cohort" d="M[0-9. ML]+"`, dom)
	require.Contains(t, dom, `<span class="verdict v-fail">fail</span>`)
	// Text from events stayed text: the browser built no element from it.
	require.NotContains(t, dom, "<img")
	require.NotContains(t, dom, "<script")
	require.Contains(t, dom, "&lt;script&gt;")

	png, log := browsertest.Screenshot(t, "file://"+page, 1100, 2600)
	require.Empty(t, browsertest.PageErrors.FindAllString(log, -1), "page errors in the browser log:\n%s", log)
	require.Greater(t, len(png), 20_000, "a page with content, not a blank one")
	require.NoError(t, os.WriteFile(filepath.Join(t.ArtifactDir(), "report.png"), png, 0o600))
	if keep := os.Getenv(screenshotEnv); keep != "" {
		require.NoError(t, os.WriteFile(keep, png, 0o600))
	}
}

// TestChromiumCheckSeesPageErrors makes sure the check above can fail: a
// page with a script error and a blocked remote image is caught.
func TestChromiumCheckSeesPageErrors(t *testing.T) {
	page := filepath.Join(t.TempDir(), "bad.html")
	bad := `<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'"></head>` +
		`<body><img src="http://192.0.2.1/x.png"><script>undefinedFunction()</script></body></html>`
	require.NoError(t, os.WriteFile(page, []byte(bad), 0o600))
	_, log := browsertest.Run(t, "file://"+page, "--dump-dom")
	require.NotEmpty(t, browsertest.PageErrors.FindAllString(log, -1), "log:\n%s", log)
}
