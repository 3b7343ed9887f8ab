package ui

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/internal/browsertest"
)

// TestPagesInHeadlessChromium opens / and /findings/{id}, served by the
// real handler over HTTP with their Content-Security-Policy, in headless
// Chromium: the finding's kind and wikis are in the rendered DOM, the
// refresh script ran under the policy (it swapped the live part in place at
// least once), the log shows no CSP violation and no script error, and an
// error message holding <script> and an onerror= attribute stayed text.
// Screenshots of each page, at laptop and phone widths, are kept as test
// artefacts (go test -artifacts).
func TestPagesInHeadlessChromium(t *testing.T) {
	browsertest.Chromium(t)
	f := newFixtureRefresh(t, time.Second)
	srv := httptest.NewServer(f.mux)
	defer srv.Close()

	for _, tc := range []struct {
		name, path string
		svgs       int
	}{
		{"index", "/", 2}, // the spillover's plot and the timeline
		{"finding", "/findings/" + spillover.ID, 1}, // its plot
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Virtual time lets the one-second refresh run a few times
			// before the DOM is dumped.
			dom, log := browsertest.Run(t, srv.URL+tc.path, "--dump-dom", "--virtual-time-budget=5000")
			require.Empty(t, browsertest.PageErrors.FindAllString(log, -1), "page errors in the browser log:\n%s", log)
			require.Regexp(t, `<html lang="en" data-refreshed="[1-9][0-9]*">`, dom, "the refresh script ran and swapped the live part")
			require.Contains(t, dom, `class="verdict v-fail">fail</span>`)
			require.Contains(t, dom, string(spillover.Kind))
			for _, w := range spillover.Wikis {
				require.Contains(t, dom, w)
			}
			require.Equal(t, tc.svgs, strings.Count(dom, "<svg"))
			require.Regexp(t, `<path class="l-cohort" d="M[0-9. ML]+"`, dom)
			// The hostile message is text: no element came from it, and
			// the only script is the page's own.
			require.NotContains(t, dom, "<img")
			require.Equal(t, 1, strings.Count(dom, "<script"))
			require.Contains(t, dom, "&lt;script&gt;alert(\"x\")&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;")

			for _, size := range []struct {
				name          string
				width, height int
			}{{"laptop", 1280, 2400}, {"phone", 390, 3200}} {
				png, log := browsertest.Screenshot(t, srv.URL+tc.path, size.width, size.height)
				require.Empty(t, browsertest.PageErrors.FindAllString(log, -1), "page errors in the browser log:\n%s", log)
				require.Greater(t, len(png), 20_000, "a page with content, not a blank one")
				require.NoError(t, os.WriteFile(filepath.Join(t.ArtifactDir(), fmt.Sprintf("%s-%s.png", tc.name, size.name)), png, 0o600))
			}
		})
	}
}

// TestChromiumSeesPolicyViolations makes sure the check above can fail
// under the page's own policy: an inline event handler and an inline
// script without the nonce are refused, and the log says so.
func TestChromiumSeesPolicyViolations(t *testing.T) {
	browsertest.Chromium(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Security-Policy", ContentSecurityPolicy("abc"))
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = fmt.Fprint(w, `<!DOCTYPE html><html><body><img src="data:," onerror="document.title='x'"><script>document.title='y'</script></body></html>`)
	}))
	defer srv.Close()
	_, log := browsertest.Run(t, srv.URL, "--dump-dom")
	require.Regexp(t, `violates the following Content Security Policy`, strings.Join(browsertest.PageErrors.FindAllString(log, -1), "\n"), "log:\n%s", log)
}
