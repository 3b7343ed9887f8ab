package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/alert/amtest"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// opsQuietLiveDaemon starts Kafka (two partitions a topic) fed quiet live traffic (10 min
// past, 10 min live at 100 records/s) and a daemon on them, and returns
// once the daemon is ready and has read all that was written.
func opsQuietLiveDaemon(t *testing.T) (*opsKafka, *opsFeeder, *opsDaemon, opsHTTP) {
	t.Helper()
	k := opsStartKafka(t, 2, opsTopics)
	f := opsStartFeeder(t, k, opsFeed{Scenario: "quiet", Seed: 3, Past: 10 * time.Minute, Live: 10 * time.Minute, Rate: 100})
	<-f.Caught()
	cfg := opsWriteFile(t, t.TempDir(), "detector.yml", opsConfig{Brokers: k.Addr()}.YAML())
	d := opsStartDaemon(t, opsDaemonOptions{ConfigFile: cfg})
	h := d.HTTP()
	h.WaitReady(t, 60*time.Second)
	require.Eventually(t, func() bool {
		_, w := f.Written()
		return h.Metrics(t).Sum("detector_ingest_records_total") >= float64(w)
	}, 30*time.Second, 100*time.Millisecond, "caught up with the live traffic")
	return k, f, d, h
}

// TestOpsBrokerOutage: the broker's port goes away (connections dropped,
// new ones refused) for 5 s (30 s with -ops.long) while traffic goes on
// being written, then comes back. The daemon keeps running, shows the
// outage in its metrics (reconnects, a growing watermark delay), reconnects
// by itself and reads every record written meanwhile: none lost, none
// read twice.
func TestOpsBrokerOutage(t *testing.T) {
	outage := 5 * time.Second
	if *opsLong {
		outage = 30 * time.Second
	}
	k, f, d, h := opsQuietLiveDaemon(t)
	before := h.Metrics(t)
	delayBefore := before.Sum("detector_window_watermark_delay_seconds")
	partitions := before.Sum("detector_ingest_partitions")
	require.Positive(t, partitions)
	require.Equal(t, partitions, before.Sum("detector_ingest_partitions_connected"), "every partition connected")

	k.ln.Down()
	down := time.Now()
	_, writtenAtCut := f.Written()
	var during opsMetrics
	require.Eventually(t, func() bool {
		during = h.Metrics(t)
		return during.Sum("detector_ingest_reconnects_total") > before.Sum("detector_ingest_reconnects_total")
	}, outage, 50*time.Millisecond, "the broken connections are counted while the broker is away")
	require.Eventually(t, func() bool {
		return h.Metrics(t).Sum("detector_ingest_partitions_connected") == 0
	}, outage, 50*time.Millisecond, "the health gauge shows no partition connected while the broker is away")
	time.Sleep(time.Until(down.Add(outage)))
	during = h.Metrics(t)
	_, writtenDuring := f.Written()
	require.Greater(t, writtenDuring, writtenAtCut, "traffic went on during the outage")
	require.Less(t, during.Sum("detector_ingest_records_total"), float64(writtenDuring), "nothing read while the broker is away")
	delayDuring := during.Sum("detector_window_watermark_delay_seconds")
	require.Greater(t, delayDuring-delayBefore, (outage - 2*time.Second).Seconds(),
		"the watermark delay grows while nothing arrives (%.1fs before, %.1fs during)", delayBefore, delayDuring)
	require.Contains(t, d.Logs.String(), "Partition read interrupted; reconnecting")

	require.NoError(t, k.ln.Up())
	up := time.Now()
	require.Eventually(t, func() bool {
		return h.Metrics(t).Sum("detector_ingest_records_total") > during.Sum("detector_ingest_records_total")
	}, 30*time.Second, 50*time.Millisecond, "reads resume by themselves")
	resumed := time.Since(up)
	// Let live traffic flow a little after the broker is back, then stop
	// writing: every record written must have been read exactly once.
	time.Sleep(2 * time.Second)
	require.NoError(t, f.Stop())
	written, total := f.Written()
	var after opsMetrics
	require.Eventually(t, func() bool {
		after = h.Metrics(t)
		return after.Sum("detector_ingest_records_total") >= float64(total)
	}, 40*time.Second, 100*time.Millisecond, "every record read")
	t.Logf("outage %s: %.0f reconnect attempts, watermark delay %.1fs → %.1fs; reads resumed %s after the broker returned; %d records written in all, as many read",
		outage, during.Sum("detector_ingest_reconnects_total")-before.Sum("detector_ingest_reconnects_total"), delayBefore, delayDuring,
		resumed.Round(10*time.Millisecond), total)
	for topic, n := range written {
		require.Equal(t, float64(n), after.Sum("detector_ingest_records_total", "topic", topic), "records of %s: none lost, none twice", topic)
		require.Equal(t, 0.0, after.Sum("detector_ingest_consumer_lag_records", "topic", topic))
	}
	require.Less(t, after.Sum("detector_window_watermark_delay_seconds"), delayDuring, "the watermark caught up")
	require.Equal(t, partitions, after.Sum("detector_ingest_partitions_connected"), "every partition connected again")
	code, _ := h.Get(t, "/-/ready")
	require.Equal(t, http.StatusOK, code)
	select {
	case err := <-d.Done():
		t.Fatalf("the daemon stopped: %v", err)
	default:
	}
}

// opsAMAlert is an alert as Alertmanager's API v2 lists it.
type opsAMAlert struct {
	Labels      map[string]string `json:"labels"`
	Fingerprint string            `json:"fingerprint"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func opsAMAlerts(t *testing.T, base, alertname string) []opsAMAlert {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(base + "/api/v2/alerts?filter=" + url.QueryEscape(`alertname="`+alertname+`"`))
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out []opsAMAlert
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

// TestOpsKillAndRestart runs the daemon as a child process and sends it
// real signals: SIGHUP reloads (a bad file is kept out and said so), SIGKILL
// ends it mid-incident, and the restarted daemon rebuilds its windows from
// Kafka alone, finds the same incident with the same identity, and
// re-sends the alert Alertmanager already holds: still one alert, one
// notification. SIGTERM then stops it cleanly within 10 s.
func TestOpsKillAndRestart(t *testing.T) {
	hook := amtest.NewWebhook(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: hook.URL})
	k := opsStartKafka(t, 2, opsTopics)
	f := opsStartFeeder(t, k, opsFeed{Scenario: "spillover-jobrunner", Seed: 4, SinceOnset: 12 * time.Minute, Live: 10 * time.Minute, Rate: 20})
	<-f.Caught()
	dir := t.TempDir()
	good := opsConfig{Brokers: k.Addr()}.YAML()
	cfg := opsWriteFile(t, dir, "detector.yml", good)
	// The production resend delay (1 m): a firing alert is good for 4 m at
	// Alertmanager, longer than a restart takes.
	args := []string{"--config.file=" + cfg, "--alertmanager.url=" + am.URL}
	const alertname = "PretrainSharedDataSpillover"

	a := opsStartProcess(t, args...)
	ha := a.HTTP()
	ha.WaitReady(t, 60*time.Second)
	fa := ha.WaitFinding(t, detect.KindSharedDataSpillover, 60*time.Second)
	first := hook.WaitFor(t, 30*time.Second, func(x amtest.Alert) bool {
		return x.Status == "firing" && x.Labels["finding_id"] == fa.ID
	})
	require.Equal(t, alertname, first.Labels["alertname"])

	t.Run("SIGHUP reloads; a bad file is kept out", func(t *testing.T) {
		// Whatever happens here, the restart below reads the good file.
		t.Cleanup(func() { _ = os.WriteFile(cfg, []byte(good), 0o600) })
		opsWriteFile(t, dir, "detector.yml", good+"window:\n  buckets: 10s\n")
		require.NoError(t, a.Signal(syscall.SIGHUP))
		require.Eventually(t, func() bool {
			return ha.Metrics(t).Sum("detector_config_last_reload_successful") == 0
		}, 10*time.Second, 50*time.Millisecond)
		// The child's log comes through a pipe: it may trail the metric.
		require.Eventually(t, func() bool {
			logs := a.Logs.String()
			return strings.Contains(logs, "Configuration reload failed; keeping the old one") &&
				strings.Contains(logs, `unknown field \"buckets\" in window`)
		}, 10*time.Second, 50*time.Millisecond, "the failed reload is logged, naming the field: %s", a.Logs.String())
		code, _ := ha.Get(t, "/-/ready")
		require.Equal(t, http.StatusOK, code, "still running on the old configuration")

		opsWriteFile(t, dir, "detector.yml", good)
		require.NoError(t, a.Signal(syscall.SIGHUP))
		require.Eventually(t, func() bool {
			return ha.Metrics(t).Sum("detector_config_last_reload_successful") == 1
		}, 10*time.Second, 50*time.Millisecond)
	})

	require.NoError(t, a.Signal(syscall.SIGKILL))
	require.Equal(t, -1, a.Wait(t, 10*time.Second), "killed by a signal")

	b := opsStartProcess(t, args...)
	hb := b.HTTP()
	hb.WaitReady(t, 60*time.Second)
	fb := hb.WaitFinding(t, detect.KindSharedDataSpillover, 60*time.Second)
	require.Equal(t, fa.ID, fb.ID, "the same identity after a restart")
	require.Equal(t, fa.Wikis, fb.Wikis)
	require.Equal(t, fa.Fingerprint, fb.Fingerprint)
	require.Equal(t, fa.StartedAt, fb.StartedAt, "the windows were rebuilt from the same records")
	require.Eventually(t, func() bool {
		return hb.Metrics(t).Sum("detector_notifications_sent_total") > 0
	}, 30*time.Second, 100*time.Millisecond, "the restarted daemon sends the alert again")
	// Give Alertmanager time to notify, were it to see a new alert
	// (group_interval is 1 s in amtest).
	time.Sleep(3 * time.Second)

	held := opsAMAlerts(t, am.URL, alertname)
	require.Len(t, held, 1, "Alertmanager holds one alert for the incident: %+v", held)
	require.Equal(t, first.Fingerprint, held[0].Fingerprint, "the same alert, not a second one")
	require.Equal(t, first.Labels, held[0].Labels)
	require.Equal(t, "active", held[0].Status.State)
	var firing []amtest.Alert
	for _, x := range hook.Alerts() {
		if x.Labels["alertname"] == alertname {
			require.Equal(t, first.Fingerprint, x.Fingerprint)
			if x.Status == "firing" {
				firing = append(firing, x)
			}
		}
	}
	require.Len(t, firing, 1, "the receiver was notified once")

	start := time.Now()
	require.NoError(t, b.Signal(syscall.SIGTERM))
	require.Equal(t, 0, b.Wait(t, 12*time.Second), "a clean stop: alerts drained")
	took := time.Since(start)
	t.Logf("SIGTERM to exit: %s", took.Round(time.Millisecond))
	require.Less(t, took, 10*time.Second)
	require.NoError(t, f.Stop())
}

// TestOpsAlertmanagerDownAndBack: the daemon finds an incident while
// Alertmanager is down, counts the failed sends, and delivers the alert by
// itself once Alertmanager is back.
func TestOpsAlertmanagerDownAndBack(t *testing.T) {
	hook := amtest.NewWebhook(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: hook.URL})
	am.Stop()
	k := opsStartKafka(t, 2, opsTopics)
	f := opsStartFeeder(t, k, opsFeed{Scenario: "spillover-jobrunner", Seed: 5, SinceOnset: 12 * time.Minute, Rate: 20})
	f.Wait(t)
	cfg := opsWriteFile(t, t.TempDir(), "detector.yml", opsConfig{Brokers: k.Addr()}.YAML())
	d := opsStartDaemon(t, opsDaemonOptions{ConfigFile: cfg, Alertmanagers: []string{am.URL}})
	h := d.HTTP()
	h.WaitReady(t, 60*time.Second)
	fd := h.WaitFinding(t, detect.KindSharedDataSpillover, 60*time.Second)
	require.Eventually(t, func() bool {
		return h.Metrics(t).Sum("detector_notifications_errors_total") > 0
	}, 20*time.Second, 100*time.Millisecond, "failed sends are counted")
	require.Contains(t, d.Logs.String(), "Sending alerts to Alertmanager, will retry")

	am.Restart()
	got := hook.WaitFor(t, 30*time.Second, func(x amtest.Alert) bool {
		return x.Status == "firing" && x.Labels["finding_id"] == fd.ID
	})
	require.Equal(t, "critical", got.Labels["severity"])
	// Alertmanager may notify the webhook before its answer to our POST
	// is back and counted.
	require.Eventually(t, func() bool {
		return h.Metrics(t).Sum("detector_notifications_sent_total") > 0
	}, 10*time.Second, 50*time.Millisecond, "the delivery is counted")
}

// opsRecords simulates a few minutes of quiet traffic ending now and
// returns the records by topic.
func opsRecords(t *testing.T, d time.Duration) map[string][]kafka.Message {
	t.Helper()
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	// Rate 200: errors are a few per 10k requests, and each data centre's
	// topic must get some.
	cfg := simulate.Config{Scenario: "quiet", Seed: 6, Start: time.Now().Add(-d), Duration: d, Rate: 200}
	out := map[string][]kafka.Message{}
	_, err = simulate.Run(context.Background(), cfg, wikis, func(_ context.Context, b []simulate.Record) error {
		for _, r := range b {
			out[r.Topic] = append(out[r.Topic], kafka.Message{Topic: r.Topic, Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value), Time: r.Time})
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// TestOpsNewTopicAndPartitions: a configured topic that does not exist is
// a warning and a metric, and is picked up when created; partitions added
// to a topic are read too.
func TestOpsNewTopicAndPartitions(t *testing.T) {
	const (
		late  = "k8s-mw-codfw"
		grows = "mediawiki.httpd.accesslog"
	)
	k := opsStartKafka(t, 1, []string{"k8s-mw-eqiad", grows})
	recs := opsRecords(t, 5*time.Minute)
	// Error records of both data centres go to the late topic: the
	// active one logs most of them.
	var errs []kafka.Message
	for _, m := range append(recs["k8s-mw-eqiad"], recs[late]...) {
		m.Topic = late
		errs = append(errs, m)
	}
	recs[late] = errs
	require.GreaterOrEqual(t, len(recs[late]), 5)
	require.GreaterOrEqual(t, len(recs[grows]), 1000)
	cfg := opsWriteFile(t, t.TempDir(), "detector.yml", opsConfig{Brokers: k.Addr(), TopicRecheck: time.Second}.YAML())
	d := opsStartDaemon(t, opsDaemonOptions{ConfigFile: cfg})
	h := d.HTTP()
	h.WaitReady(t, 30*time.Second)
	m := h.Metrics(t)
	require.Equal(t, 1.0, m.Sum("detector_ingest_topic_missing", "topic", late))
	require.Equal(t, 0.0, m.Sum("detector_ingest_partitions", "topic", late))
	require.Equal(t, 1.0, m.Sum("detector_ingest_partitions", "topic", grows))
	require.Contains(t, d.Logs.String(), "Topic not found; will look again")

	write := func(msgs []kafka.Message, bal kafka.Balancer) {
		w := k.Writer()
		if bal != nil {
			w.Balancer = bal
		}
		require.NoError(t, w.WriteMessages(context.Background(), msgs...))
		require.NoError(t, w.Close())
	}

	t.Run("a topic created after the start", func(t *testing.T) {
		resp, err := k.Admin().CreateTopics(context.Background(), &kafka.CreateTopicsRequest{
			Topics: []kafka.TopicConfig{{Topic: late, NumPartitions: 2, ReplicationFactor: 1}}})
		require.NoError(t, err)
		require.NoError(t, resp.Errors[late])
		write(recs[late], nil)
		require.Eventually(t, func() bool {
			m := h.Metrics(t)
			return m.Sum("detector_ingest_topic_missing", "topic", late) == 0 &&
				m.Sum("detector_ingest_partitions", "topic", late) == 2 &&
				m.Sum("detector_ingest_records_total", "topic", late) == float64(len(recs[late]))
		}, 20*time.Second, 100*time.Millisecond, "the new topic is read, all %d records", len(recs[late]))
	})

	t.Run("partitions added to a topic", func(t *testing.T) {
		k.AddPartitions(t, grows, 3)
		// Only onto the new partitions 1 and 2.
		n := 0
		onNew := kafka.BalancerFunc(func(_ kafka.Message, partitions ...int) int {
			require.Len(t, partitions, 3, "the writer sees the new partitions")
			n++
			return 1 + n%2
		})
		write(recs[grows], onNew)
		require.Eventually(t, func() bool {
			m := h.Metrics(t)
			return m.Sum("detector_ingest_partitions", "topic", grows) == 3 &&
				m.Sum("detector_ingest_records_total", "topic", grows) == float64(len(recs[grows]))
		}, 20*time.Second, 100*time.Millisecond, "the new partitions are read, all %d records", len(recs[grows]))
	})
}
