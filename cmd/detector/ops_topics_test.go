package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/detect"
)

// opsOnlyEqiad moves every record of k8s-mw-codfw to k8s-mw-eqiad: the
// traffic of a cluster that has no k8s-mw-codfw topic.
func opsOnlyEqiad(batch []kafka.Message) ([]kafka.Message, int) {
	for i := range batch {
		if batch[i].Topic == "k8s-mw-codfw" {
			batch[i].Topic = "k8s-mw-eqiad"
		}
	}
	return batch, 0
}

// TestOpsMissingTopic: with the default topics against a cluster that has
// no k8s-mw-codfw (an ordinary cluster: the other data centre's topic is
// often absent), the daemon warns, becomes ready, evaluates, and fires the
// scenario's finding within two evaluation intervals of catching up.
func TestOpsMissingTopic(t *testing.T) {
	k := opsStartKafka(t, 2, []string{"k8s-mw-eqiad", "mediawiki.httpd.accesslog"})
	f := opsStartFeeder(t, k, opsFeed{Scenario: "spillover-jobrunner", Seed: 4, SinceOnset: 12 * time.Minute, Live: 10 * time.Minute, Rate: 20, Mix: opsOnlyEqiad})
	<-f.Caught()
	cfg := opsWriteFile(t, t.TempDir(), "detector.yml", opsConfig{Brokers: k.Addr()}.YAML())
	d := opsStartDaemon(t, opsDaemonOptions{ConfigFile: cfg})
	h := d.HTTP()
	h.WaitReady(t, 60*time.Second)
	ready := time.Now()
	var got detect.Finding
	require.Eventually(t, func() bool {
		for _, f := range h.Findings(t) {
			if f.Kind == detect.KindSharedDataSpillover && f.State == detect.StateFiring {
				got = f
				return true
			}
		}
		return false
	}, 2*opsEvalInterval+time.Second, 20*time.Millisecond, "the spillover fires within two evaluation intervals of becoming ready")
	t.Logf("%s firing %s after ready", got.ID, time.Since(ready).Round(time.Millisecond))
	m := h.Metrics(t)
	require.Equal(t, 1.0, m.Sum("detector_ingest_topic_missing", "topic", "k8s-mw-codfw"))
	require.Positive(t, opsHistCount(m, "detector_detect_evaluation_duration_seconds"))
	require.Contains(t, d.Logs.String(), "Topic not found; will look again")
	code, _ := h.Get(t, "/-/ready")
	require.Equal(t, http.StatusOK, code)
}

// opsEvalInterval is the daemon's evaluation interval (pipeline.Options.EvalInterval's default).
const opsEvalInterval = 200 * time.Millisecond
