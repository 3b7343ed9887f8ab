package alert_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/alert/amtest"
	"github.com/wikimedia/pretrain-detector/detect"
)

// These tests run a real Alertmanager (see package amtest): skipped without
// the binary, failed without it when DETECTOR_REQUIRE_ALERTMANAGER=1.

const webhookTimeout = 20 * time.Second

// startNotifier runs a notifier until the test ends, then drains it.
func startNotifier(t *testing.T, o alert.NotifierOptions) (*alert.Notifier, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := alert.NewNotifier(o, logger, reg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		_ = n.Drain(dctx) // closes idle connections; tests check losses themselves
	})
	return n, reg
}

// testWriter sends the notifier's log to t.Log, shown when a test fails.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// metricValue sums a metric's samples from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return v
}

func spilloverFinding(now time.Time) detect.Finding {
	return detect.Finding{
		ID:                "spill-it-3f9a",
		Kind:              detect.KindSharedDataSpillover,
		Severity:          "critical",
		State:             detect.StateFiring,
		Summary:           "DBQueryError on s3 wikis after the Pretrain deploy",
		Wikis:             []string{"testwiki", "enwiktionary"},
		StartedAt:         now.Add(-5 * time.Minute),
		DetectedAt:        now.Add(-time.Minute),
		NormalizedMessage: "Wikimedia\\Rdbms\\DBQueryError: Error 1054: Unknown column",
		ExceptionClass:    "Wikimedia\\Rdbms\\DBQueryError",
		Channel:           "exception",
		Fingerprint:       "3f9a",
		Deploy:            &detect.Deploy{Scope: "pretrain", Version: "1.47.0-alpha", At: now.Add(-8 * time.Minute).UTC().Truncate(time.Second)},
		Evidence: detect.Evidence{
			Test: "poisson-rate-ratio", CohortErrors: 412, CohortRequests: 1830000, ControlErrors: 3, ControlRequests: 2210000,
			RateRatio: 165.8, BaselineRatio: 1.1, PValue: 1.2e-41, Alpha: 0.0002,
			SharedData: "s3", Frame: "includes/libs/rdbms/database/Database.php",
			Exemplar: "<script>alert(1)</script> Error 1054\nUnknown column",
		},
	}
}

func TestAlertmanagerFiringThenResolved(t *testing.T) {
	hook := amtest.NewWebhook(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: hook.URL})
	n, reg := startNotifier(t, alert.NotifierOptions{
		URLs:        []string{am.URL},
		ExternalURL: "http://detector.example:9797",
		ExtraLabels: map[string]string{"replay": "false"},
	})

	now := time.Now()
	f := spilloverFinding(now)
	n.Update([]detect.Finding{f})
	got := hook.WaitFor(t, webhookTimeout, func(a amtest.Alert) bool {
		return a.Labels["finding_id"] == f.ID && a.Status == "firing"
	})
	require.Equal(t, map[string]string{
		"alertname":   "PretrainSharedDataSpillover",
		"severity":    "critical",
		"kind":        "shared-data-spillover",
		"cohort":      "pretrain",
		"finding_id":  f.ID,
		"fingerprint": "3f9a",
		"replay":      "false",
	}, got.Labels)
	require.Equal(t, f.Summary, got.Annotations["summary"])
	require.Equal(t, "<script>alert(1)</script> Error 1054 Unknown column", got.Annotations["exemplar"], "markup arrives as the same text")
	require.Equal(t, "testwiki,enwiktionary", got.Annotations["wikis"])
	require.Equal(t, "pretrain 1.47.0-alpha at "+f.Deploy.At.Format(time.RFC3339), got.Annotations["deploy"])
	require.Equal(t, "s3 via includes/libs/rdbms/database/Database.php", got.Annotations["shared_data"])
	require.Equal(t, f.StartedAt.UTC().Format(time.RFC3339), got.Annotations["started_at"])
	require.Equal(t, f.DetectedAt.UTC().Format(time.RFC3339), got.Annotations["detected_at"])
	require.Equal(t, "https://wikitech.wikimedia.org/wiki/Pretrain/Detector#shared-data-spillover", got.Annotations["runbook_url"])
	require.Contains(t, got.Annotations["description"], "Cohort since onset: 412 errors / 1830000 requests")
	require.Contains(t, got.Annotations["description"], "p-value 1.2e-41")
	require.Equal(t, "http://detector.example:9797/findings/"+f.ID, got.GeneratorURL)
	require.WithinDuration(t, f.StartedAt, got.StartsAt, time.Millisecond)

	resolvedAt := time.Now()
	r := f
	r.State = detect.StateResolved
	r.ResolvedAt = &resolvedAt
	n.Update([]detect.Finding{r})
	got = hook.WaitFor(t, webhookTimeout, func(a amtest.Alert) bool {
		return a.Labels["finding_id"] == f.ID && a.Status == "resolved"
	})
	require.WithinDuration(t, resolvedAt, got.EndsAt, time.Millisecond)

	// Alertmanager may notify the webhook before its answer to our POST
	// is back and counted.
	require.Eventually(t, func() bool { return metricValue(t, reg, "detector_notifications_sent_total") >= 2.0 }, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, 2.0, metricValue(t, reg, "detector_notifications_sent_total"))
	require.Zero(t, metricValue(t, reg, "detector_notifications_errors_total"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, n.Drain(ctx))
}

// TestAlertmanagerDownThenUp starts the notifier against an Alertmanager
// that is not there yet: the queued alerts arrive once it is, except what a
// tiny queue had to drop, which is counted.
func TestAlertmanagerDownThenUp(t *testing.T) {
	hook := amtest.NewWebhook(t)
	addr := amtest.FreeAddr(t)
	n, reg := startNotifier(t, alert.NotifierOptions{
		URLs:          []string{"http://" + addr},
		QueueCapacity: 2,
	})

	now := time.Now()
	fs := make([]detect.Finding, 5)
	for i := range fs {
		fs[i] = spilloverFinding(now)
		fs[i].ID = "down-" + string(rune('a'+i))
	}
	// The first goes out at once and fails: it is the batch being retried.
	n.Update(fs[:1])
	require.Eventually(t, func() bool {
		return metricValue(t, reg, "detector_notifications_errors_total") >= 1
	}, 10*time.Second, 10*time.Millisecond)
	// Four more into a queue of two: the two oldest are dropped.
	n.Update(fs)
	require.Equal(t, 2, n.QueueLen())
	require.Equal(t, 2.0, metricValue(t, reg, "detector_notifications_dropped_total"))

	time.Sleep(3 * time.Second) // Alertmanager stays down a while
	amtest.Start(t, amtest.Options{WebhookURL: hook.URL, Addr: addr})

	for _, id := range []string{"down-a", "down-d", "down-e"} {
		hook.WaitFor(t, webhookTimeout, func(a amtest.Alert) bool { return a.Labels["finding_id"] == id && a.Status == "firing" })
	}
	for _, a := range hook.Alerts() {
		require.NotContains(t, []string{"down-b", "down-c"}, a.Labels["finding_id"], "dropped alerts cannot arrive")
	}
	// Alertmanager may notify the webhook before its answer to our POST
	// is back and counted.
	require.Eventually(t, func() bool { return metricValue(t, reg, "detector_notifications_sent_total") >= 3.0 }, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, 3.0, metricValue(t, reg, "detector_notifications_sent_total"))
	require.Zero(t, n.QueueLen())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.ErrorContains(t, n.Drain(ctx), "2 alerts were dropped")
}

// TestAlertmanagerRestart kills Alertmanager and brings it back on the same
// port: the resend after the restart restores the alert it lost.
func TestAlertmanagerRestart(t *testing.T) {
	hook := amtest.NewWebhook(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: hook.URL})
	n, reg := startNotifier(t, alert.NotifierOptions{URLs: []string{am.URL}, ResendDelay: time.Second})

	f := spilloverFinding(time.Now())
	n.Update([]detect.Finding{f})
	hook.WaitFor(t, webhookTimeout, func(a amtest.Alert) bool { return a.Labels["finding_id"] == f.ID })
	before := len(hook.Messages())
	am.Stop()
	time.Sleep(1100 * time.Millisecond)
	n.Update([]detect.Finding{f}) // resend while it is down: retried
	require.Eventually(t, func() bool {
		return metricValue(t, reg, "detector_notifications_errors_total") >= 1
	}, 10*time.Second, 10*time.Millisecond)
	am.Restart()
	require.Eventually(t, func() bool {
		return metricValue(t, reg, "detector_notifications_sent_total") >= 2
	}, webhookTimeout, 10*time.Millisecond)
	// The restarted Alertmanager lost its state (killed, nothing persisted),
	// so the resent alert is new to it and notified again.
	require.Eventually(t, func() bool {
		for _, m := range hook.Messages()[before:] {
			for _, a := range m.Alerts {
				if a.Labels["finding_id"] == f.ID && a.Status == "firing" {
					return true
				}
			}
		}
		return false
	}, webhookTimeout, 10*time.Millisecond)
}

// TestAlertmanagerOutageOfTenResendIntervals: Alertmanager is down while a
// finding fires and for 10 resend intervals after the one Update that queued
// it; when it is back, the finding arrives firing. The body is built for the
// attempt that delivers it (EndsAt = that attempt + 4 resend delays), not for
// the first attempt, whose EndsAt is long past by then and would make
// Alertmanager take the alert as resolved.
func TestAlertmanagerOutageOfTenResendIntervals(t *testing.T) {
	const resend = 300 * time.Millisecond
	hook := amtest.NewWebhook(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: hook.URL})
	am.Stop()
	n, reg := startNotifier(t, alert.NotifierOptions{URLs: []string{am.URL}, ResendDelay: resend})

	now := time.Now()
	fs := make([]detect.Finding, 3)
	for i := range fs {
		fs[i] = spilloverFinding(now)
		fs[i].ID = "outage-" + string(rune('a'+i))
	}
	n.Update(fs)
	require.Eventually(t, func() bool {
		return metricValue(t, reg, "detector_notifications_errors_total") >= 3
	}, 10*time.Second, 10*time.Millisecond)
	down := time.Now()
	for time.Since(down) < 10*resend {
		time.Sleep(resend / 3)
	}
	am.Restart()
	for _, f := range fs {
		got := hook.WaitFor(t, webhookTimeout, func(a amtest.Alert) bool { return a.Labels["finding_id"] == f.ID })
		require.Equal(t, "firing", got.Status, "%s arrived as %s", f.ID, got.Status)
	}
	for _, a := range hook.Alerts() {
		require.Equal(t, "firing", a.Status, "%s: nothing arrives resolved", a.Labels["finding_id"])
	}
}

// TestAlertmanagerBasicAuth: an Alertmanager behind basic auth (its own
// --web.config.file) receives alerts from a notifier whose set reads the
// password from a file; without credentials it refuses them.
func TestAlertmanagerBasicAuth(t *testing.T) {
	const user, pass = "detector", "am-pw-Tq7nB2xW"
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	require.NoError(t, err)
	webCfg := filepath.Join(dir, "am-web.yml")
	require.NoError(t, os.WriteFile(webCfg, []byte("basic_auth_users:\n  "+user+": "+string(hash)+"\n"), 0o600))
	passFile := filepath.Join(dir, "am-password")
	require.NoError(t, os.WriteFile(passFile, []byte(pass+"\n"), 0o600))

	hook := amtest.NewWebhook(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: hook.URL, WebConfigFile: webCfg, ProbeUser: user, ProbePass: pass})
	n, reg := startNotifier(t, alert.NotifierOptions{Sets: []alert.AlertmanagerSet{{
		URLs:       []string{am.URL},
		HTTPConfig: config.HTTPClientConfig{BasicAuth: &config.BasicAuth{Username: user, PasswordFile: passFile}, FollowRedirects: true},
	}}})
	f := spilloverFinding(time.Now())
	n.Update([]detect.Finding{f})
	got := hook.WaitFor(t, webhookTimeout, func(a amtest.Alert) bool { return a.Labels["finding_id"] == f.ID })
	require.Equal(t, "firing", got.Status)
	require.Eventually(t, func() bool { return metricValue(t, reg, "detector_notifications_sent_total") >= 1 }, 5*time.Second, 20*time.Millisecond)

	anon, anonReg := startNotifier(t, alert.NotifierOptions{URLs: []string{am.URL}})
	anon.Update([]detect.Finding{f})
	require.Eventually(t, func() bool { return metricValue(t, anonReg, "detector_notifications_errors_total") >= 1 }, 10*time.Second, 20*time.Millisecond)
	require.Zero(t, metricValue(t, anonReg, "detector_notifications_sent_total"), "401 without credentials")
}
