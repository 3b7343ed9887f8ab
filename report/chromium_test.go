package report

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The report is checked in a real browser: headless Chromium (Debian's
// chromium package; CI installs it and sets DETECTOR_REQUIRE_CHROMIUM=1 so
// that a missing browser fails instead of skipping). Set
// DETECTOR_REPORT_SCREENSHOT=path.png to keep a screenshot of the sample
// report for a look.
const (
	chromiumBin        = "/usr/bin/chromium"
	requireChromiumEnv = "DETECTOR_REQUIRE_CHROMIUM"
	screenshotEnv      = "DETECTOR_REPORT_SCREENSHOT"
)

func chromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumBin); err != nil {
		if os.Getenv(requireChromiumEnv) == "1" {
			t.Fatalf("%s: %v (required: %s=1; apt-get install -y chromium)", chromiumBin, err, requireChromiumEnv)
		}
		t.Skipf("no %s (apt-get install -y chromium)", chromiumBin)
	}
	return chromiumBin
}

// runChromium opens page in a fresh headless profile with every network
// feature of the browser itself off, and returns stdout and the log.
func runChromium(t *testing.T, page string, extra ...string) (stdout, log string) {
	t.Helper()
	bin := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + filepath.Join(t.TempDir(), "profile"), "--enable-logging=stderr", "--v=0",
	}
	args = append(append(args, extra...), "file://"+page)
	cmd := exec.CommandContext(ctx, bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	require.NoError(t, err, "chromium: %s", e.String())
	return o.String(), e.String()
}

// pageErrors are the log lines that say the page did something wrong: a
// console message (Chromium logs them as CONSOLE), an uncaught exception,
// or a resource refused by the Content-Security-Policy.
var pageErrors = regexp.MustCompile(`(?m)^.*(CONSOLE|Uncaught|Refused to|Content Security Policy|net::ERR_).*$`)

func TestReportInHeadlessChromium(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var b bytes.Buffer
	d := sampleData()
	require.NoError(t, Write(&b, d))
	require.NoError(t, os.WriteFile(page, b.Bytes(), 0o600))

	dom, log := runChromium(t, page, "--dump-dom")
	require.Empty(t, pageErrors.FindAllString(log, -1), "page errors in the browser log:\n%s", log)
	// It renders: the DOM holds every finding, with its plot.
	for _, f := range d.Findings {
		require.Contains(t, dom, f.ID)
		require.Contains(t, dom, f.Summary[:20])
	}
	require.Equal(t, 3, strings.Count(dom, "<svg"), "the timeline and two plots")
	require.Equal(t, 2, strings.Count(dom, `class="l-cohort"`))
	require.Regexp(t, `<path class="l-cohort" d="M[0-9. ML]+"`, dom)
	// Text from events stayed text: the browser built no element from it.
	require.NotContains(t, dom, "<img")
	require.NotContains(t, dom, "<script")
	require.Contains(t, dom, "&lt;script&gt;")

	shot := filepath.Join(dir, "report.png")
	_, log = runChromium(t, page, "--screenshot="+shot, "--window-size=1100,2600", "--hide-scrollbars")
	require.Empty(t, pageErrors.FindAllString(log, -1), "page errors in the browser log:\n%s", log)
	png, err := os.ReadFile(shot)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")), "a PNG")
	require.Greater(t, len(png), 20_000, "a page with content, not a blank one")
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
	_, log := runChromium(t, page, "--dump-dom")
	require.NotEmpty(t, pageErrors.FindAllString(log, -1), "log:\n%s", log)
}
