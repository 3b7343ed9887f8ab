// Package browsertest opens pages in a real browser for tests: headless
// Chromium (Debian's chromium package). CI installs it and sets
// DETECTOR_REQUIRE_CHROMIUM=1, so that a missing browser fails the tests
// instead of skipping them.
package browsertest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

const (
	// Bin is where Debian's package installs the browser.
	Bin = "/usr/bin/chromium"
	// RequireEnv, set to 1, makes a missing browser a failure.
	RequireEnv = "DETECTOR_REQUIRE_CHROMIUM"
)

// Chromium returns the browser's path, or skips the test without it
// (fails it when RequireEnv is 1).
func Chromium(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(Bin); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s: %v (required: %s=1; apt-get install -y chromium)", Bin, err, RequireEnv)
		}
		t.Skipf("no %s (apt-get install -y chromium)", Bin)
	}
	return Bin
}

// Run opens page (a file:// or http:// URL) in a fresh headless profile with
// every network feature of the browser itself off, and returns stdout (the
// DOM with --dump-dom) and the browser's log, where console messages,
// uncaught exceptions and Content-Security-Policy violations appear.
func Run(t testing.TB, page string, extra ...string) (stdout, log string) {
	t.Helper()
	bin := Chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + filepath.Join(t.TempDir(), "profile"), "--enable-logging=stderr", "--v=0",
	}
	args = append(append(args, extra...), page)
	cmd := exec.CommandContext(ctx, bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", page, err, e.String())
	}
	return o.String(), e.String()
}

// PageErrors matches the log lines that say the page did something wrong:
// a console message (Chromium logs them as CONSOLE), an uncaught
// exception, or something refused by the Content-Security-Policy.
var PageErrors = regexp.MustCompile(`(?m)^.*(CONSOLE|Uncaught|Refused to|Content Security Policy|net::ERR_).*$`)

// Screenshot renders page at width × height and returns the PNG.
func Screenshot(t testing.TB, page string, width, height int, extra ...string) (png []byte, log string) {
	t.Helper()
	shot := filepath.Join(t.TempDir(), "shot.png")
	args := append([]string{"--screenshot=" + shot, "--window-size=" + itoa(width) + "," + itoa(height), "--hide-scrollbars"}, extra...)
	_, log = Run(t, page, args...)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("screenshot of %s: %v", page, err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot of %s is not a PNG", page)
	}
	return png, log
}

func itoa(n int) string { return strconv.Itoa(n) }
