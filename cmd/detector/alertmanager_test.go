package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/wikimedia/pretrain-detector/alert/amtest"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

const scriptMarkup = `<script>alert(1)</script>`

// TestDaemonAlertsAlertmanager is the daemon end to end: simulated Wikimedia
// traffic with a shared-data spillover goes into an in-process Kafka; the
// daemon's own code path (runDaemon, as `detector run` calls it) reads it,
// detects, and notifies a real Alertmanager, whose webhook receiver must get
// the firing alert and, once the incident's errors stop and resolve_after
// has passed in event time, the resolved one.
//
// The story is the simulator's "demo" scenario at 100 requests/s, placed
// 90 minutes before now so that it lies inside the window the daemon reads
// at start (now − 2h): 30 quiet minutes, a Pretrain deploy, a spillover of a
// DBQueryError onto s3 wikis 10 minutes later. The scenario keeps the
// spillover to its end, so the test ends it: from cut on, the spillover's
// records are left out (as if Pretrain had been rolled back) while the
// rest of the traffic goes on for 8 more minutes. The records before cut
// are written first; the rest only after the firing alert arrived, so
// Alertmanager sees the alert fire before it resolves, as it would live.
// The spillover's message also carries markup, to check how it reaches
// people. Alertmanager sits behind basic auth (its own --web.config.file);
// the daemon's credentials are in its config file (password_file), and the
// password appears nowhere the daemon shows: logs, console, /metrics,
// /api/v1/status.
func TestDaemonAlertsAlertmanager(t *testing.T) {
	began := time.Now()
	dir := t.TempDir()
	const amUser, amPass = "detector", "am-pw-Vx4kQ8rZ"
	hash, err := bcrypt.GenerateFromPassword([]byte(amPass), bcrypt.MinCost)
	require.NoError(t, err)
	hook := amtest.NewWebhook(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: hook.URL, ProbeUser: amUser, ProbePass: amPass,
		WebConfigFile: writeFile(t, dir, "am-web.yml", "basic_auth_users:\n  "+amUser+": "+string(hash)+"\n")})
	writeFile(t, dir, "am-password", amPass+"\n")
	cluster := newKafka(t)
	wikis, err := wikimap.Default()
	require.NoError(t, err)

	simCfg := simulate.Config{
		Scenario: "demo", Seed: 1, Rate: 100,
		Start:    time.Now().Add(-90 * time.Minute).Truncate(time.Minute),
		Duration: 75 * time.Minute,
		Topics:   simulate.Topics{ErrorTopics: prodTopics[:2], AccessLog: prodTopics[2]},
	}
	truth, err := simulate.Plan(simCfg, wikis)
	require.NoError(t, err)
	require.Len(t, truth.Incidents, 1)
	inc := truth.Incidents[0]
	require.Equal(t, string(detect.KindSharedDataSpillover), inc.Kind)
	require.NotNil(t, inc.Deploy)
	// At this test's 100 records/s the code test needs some 16 minutes of
	// the spillover to tell it from an s3 incident (Pretrain-served
	// requests spared against train-served ones failing); the cut leaves
	// room for that.
	cut := inc.Onset.Add(18 * time.Minute)
	require.True(t, cut.Before(truth.End.Add(-5*time.Minute)), "traffic goes on after the incident")

	cfgFile := writeFile(t, dir, "detector.yml", `kafka:
  max_wait: 100ms
detect:
  # The story's deploy comes after 30 minutes of traffic (the production
  # default asks for exactly that; bucket alignment could fall short).
  min_pre_period: 20m
  resolve_after: 2m
alerting:
  alertmanagers:
  - urls: [`+am.URL+`]
    basic_auth: {username: `+amUser+`, password_file: am-password}
`)
	const externalURL = "http://detector.example:9797"
	// Firing alerts go out with EndsAt = now + 4 × resend: if the daemon
	// stopped re-sending, Alertmanager would resolve the alert by itself
	// within a few seconds.
	const resend = time.Second
	d := startDaemon(t, daemonOptions{
		configFile: cfgFile, brokers: cluster.ListenAddrs(),
		resendDelay: resend, externalURL: externalURL,
	})

	// Feed the broker in two parts, as fast as the simulator goes.
	marker := incidentMarker(t, inc)
	release := make(chan struct{})
	paused := make(chan struct{})
	fed := make(chan error, 1)
	var injected, withheld int
	go func() {
		tr := &kafka.Transport{}
		defer tr.CloseIdleConnections()
		w := &kafka.Writer{Addr: kafka.TCP(cluster.ListenAddrs()...), Transport: tr, Balancer: &kafka.Hash{},
			BatchSize: 2000, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireOne}
		sink := simulate.KafkaSink(w)
		var out []simulate.Record
		waiting := true
		_, err := simulate.Run(t.Context(), simCfg, wikis, func(ctx context.Context, batch []simulate.Record) error {
			out = out[:0]
			for _, r := range batch {
				if waiting && !r.Time.Before(cut) {
					if err := sink(ctx, out); err != nil {
						return err
					}
					out = out[:0]
					waiting = false
					close(paused)
					select {
					case <-release:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				if r.Topic != simCfg.Topics.AccessLog && bytes.Contains(r.Value, marker) {
					if !r.Time.Before(cut) {
						withheld++
						continue
					}
					r.Value = bytes.ReplaceAll(r.Value, marker, append(append([]byte(nil), marker...), " "+scriptMarkup...))
					injected++
				}
				out = append(out, r)
			}
			return sink(ctx, out)
		})
		fed <- errors.Join(err, w.Close())
	}()

	select {
	case <-paused:
	case err := <-fed:
		t.Fatalf("simulator stopped before the cut: %v", err)
	}
	t.Logf("fed up to the cut after %s", time.Since(began))
	fire := hook.WaitFor(t, 60*time.Second, func(a amtest.Alert) bool {
		return a.Status == "firing" && a.Labels["alertname"] == "PretrainSharedDataSpillover"
	})
	firedAfter := time.Since(began)
	require.Positive(t, injected, "the spillover's errors were in the stream")
	id := fire.Labels["finding_id"]
	require.NotEmpty(t, id)
	require.Regexp(t, `^[0-9a-f]+$`, fire.Labels["fingerprint"])
	require.Equal(t, map[string]string{
		"alertname":   "PretrainSharedDataSpillover",
		"severity":    "critical",
		"kind":        "shared-data-spillover",
		"cohort":      "pretrain",
		"finding_id":  id,
		"fingerprint": fire.Labels["fingerprint"],
		"team":        "releng", // alerting.team, so it routes like every other alert
	}, fire.Labels, "labels are the identity and the team, nothing more")

	ann := fire.Annotations
	for _, k := range []string{"summary", "description", "wikis", "exemplar", "deploy", "runbook_url", "started_at", "detected_at"} {
		require.NotEmpty(t, ann[k], k)
	}
	require.Regexp(t, `Cohort since onset: \d+ errors`, ann["description"])
	require.Regexp(t, `p-value \d`, ann["description"])
	require.Contains(t, ann["description"], "Top wikis: ")
	// Pretrain's mwversion never changes: the deploy is the rollout seen in
	// the pods' names, at the first event from the new pods.
	m := regexp.MustCompile(`^pretrain (\S+) at (\S+)`).FindStringSubmatch(ann["deploy"])
	require.NotNil(t, m, ann["deploy"])
	deployAt, err := time.Parse(time.RFC3339, m[2])
	require.NoError(t, err)
	require.WithinRange(t, deployAt, inc.Deploy.At.Add(-time.Minute), inc.Deploy.At.Add(2*time.Minute))
	require.Equal(t, "https://wikitech.wikimedia.org/wiki/Pretrain/Detector#shared-data-spillover", ann["runbook_url"])
	var s3 int
	for _, w := range strings.Split(ann["wikis"], ",") {
		if id := wikis.ByNameString(w); id != 0 && wikis.Wiki(id).Section == "s3" {
			s3++
		}
	}
	require.Positive(t, s3, "the spillover's wikis are s3 wikis: %s", ann["wikis"])
	startedAt, err := time.Parse(time.RFC3339, ann["started_at"])
	require.NoError(t, err)
	require.WithinRange(t, startedAt, inc.Deploy.At, cut, "onset after the deploy and before the cut")
	require.WithinDuration(t, startedAt, fire.StartsAt, time.Second)
	// Markup from the event arrives as the same text: neither run nor
	// escaped into entities on the way through Alertmanager.
	require.Contains(t, ann["exemplar"], scriptMarkup)
	require.Contains(t, ann["summary"], scriptMarkup)
	require.NotContains(t, ann["exemplar"], "&lt;")
	require.Equal(t, externalURL+"/findings/"+url.PathEscape(id), fire.GeneratorURL)

	// The generator URL leads to the finding's page on the daemon: its
	// plot (cohort against control, the deploy marked) and its evidence,
	// the markup from the event as text.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	gen, err := url.Parse(fire.GeneratorURL)
	require.NoError(t, err)
	code, body := webGet(t, client, "GET", "http://"+d.addr+gen.RequestURI(), "")
	require.Equal(t, 200, code)
	require.Contains(t, body, "<h3>shared-data-spillover</h3>")
	require.Contains(t, body, id)
	require.Regexp(t, `<path class="l-cohort" d="M[0-9. ML]+"`, body)
	require.Contains(t, body, `<line class="deploy-pretrain"`)
	require.Contains(t, body, "<h4>Evidence</h4>")
	require.NotContains(t, body, scriptMarkup)
	require.Contains(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;")
	// The page lists it, and the deploy it follows failed.
	code, body = webGet(t, client, "GET", "http://"+d.addr+"/", "")
	require.Equal(t, 200, code)
	require.Contains(t, body, `<a href="/findings/`+id+`">shared-data-spillover</a>`)
	code, body = webGet(t, client, "GET", "http://"+d.addr+"/api/v1/deploys/"+url.PathEscape(m[1]), "")
	require.Equal(t, 200, code, body)
	require.Contains(t, body, `"verdict":"fail"`)
	require.Contains(t, body, `"findings":["`+id+`"]`)
	// And the findings API has it, markup escaped.
	code, body = webGet(t, client, "GET", "http://"+d.addr+"/api/v1/findings?id="+url.QueryEscape(id), "")
	require.Equal(t, 200, code)
	var found []detect.Finding
	require.NoError(t, json.Unmarshal([]byte(body), &found))
	require.Len(t, found, 1)
	require.Equal(t, id, found[0].ID)
	require.Equal(t, detect.StateFiring, found[0].State)
	require.NotContains(t, body, "<script>", "the API escapes markup")
	require.Contains(t, body, `\u003cscript\u003e`)

	// While the finding fires and nothing changes (no records come), the
	// daemon keeps re-sending it, so Alertmanager does not resolve it.
	metrics := func(name string) float64 { return scrapeValue(t, client, "http://"+d.addr, nil, name) }
	sentBefore := metrics("detector_notifications_sent_total")
	time.Sleep(6 * resend)
	for _, a := range hook.Alerts() {
		require.NotEqual(t, "resolved", a.Status, "resolved by Alertmanager while still firing: not re-sent")
	}
	require.GreaterOrEqual(t, metrics("detector_notifications_sent_total")-sentBefore, 3.0, "re-sent every resend delay")

	// The incident is over; the traffic goes on.
	close(release)
	require.NoError(t, <-fed)
	require.Positive(t, withheld, "the spillover went on past the cut in the scenario")
	resolved := hook.WaitFor(t, 60*time.Second, func(a amtest.Alert) bool {
		return a.Status == "resolved" && a.Labels["finding_id"] == id
	})
	require.Equal(t, fire.Labels, resolved.Labels)
	var states []string
	for _, a := range hook.Alerts() {
		if a.Labels["finding_id"] == id {
			states = append(states, a.Status)
		}
	}
	require.Equal(t, []string{"firing", "resolved"}, states, "one notification each, in order")
	require.WithinRange(t, resolved.EndsAt, cut, truth.End, "resolved in event time, after the errors stopped")
	require.NotEmpty(t, resolved.Annotations["resolved_at"])

	// What the daemon says about it, on the console and in its metrics.
	out := d.stdout.String()
	require.Contains(t, out, "[FIRING] shared-data-spillover (critical)")
	require.Contains(t, out, "[RESOLVED] shared-data-spillover (critical)")
	require.Contains(t, out, scriptMarkup, "markup is text on a terminal")
	for _, r := range out {
		require.True(t, r == '\n' || !unicode.IsControl(r), "control character %U on the console", r)
	}
	require.GreaterOrEqual(t, metrics("detector_notifications_sent_total"), 5.0)
	require.Zero(t, metrics("detector_notifications_errors_total"))
	require.Zero(t, metrics("detector_notifications_dropped_total"))
	require.Positive(t, metrics("detector_ingest_records_total"))
	require.Zero(t, metrics("detector_ingest_records_rejected_total"))
	require.InDelta(t, time.Since(truth.End).Seconds(), metrics("detector_window_watermark_delay_seconds"), 120)

	_, metricsText := webGet(t, client, "GET", "http://"+d.addr+"/metrics", "")
	_, statusText := webGet(t, client, "GET", "http://"+d.addr+"/api/v1/status", "")
	require.Contains(t, statusText, `"basic_auth":true`, "the status says credentials are set")
	require.NoError(t, d.stop(t))
	for where, text := range map[string]string{"log": d.logs.String(), "console": d.stdout.String(), "/metrics": metricsText, "/api/v1/status": statusText} {
		require.NotContains(t, text, amPass, "the Alertmanager password in the %s", where)
	}
	t.Logf("fired %s after the test began, resolved after %s; %d spillover errors sent, %d withheld after the cut; detected %s after the onset, resolved %s after the cut (event time)",
		firedAfter.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), injected, withheld,
		found[0].DetectedAt.Sub(inc.Onset), resolved.EndsAt.Sub(cut))
}

// incidentMarker is the first line of the incident's message as it appears
// inside a JSON record: what marks the spillover's records.
func incidentMarker(t *testing.T, inc simulate.Incident) []byte {
	t.Helper()
	line, _, _ := strings.Cut(inc.NormalizedMessage, "\n")
	require.NotEmpty(t, line)
	b, err := json.Marshal(line)
	require.NoError(t, err)
	return bytes.Trim(b, `"`)
}
