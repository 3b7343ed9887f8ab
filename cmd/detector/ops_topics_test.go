package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

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

const opsAccessLog = "mediawiki.httpd.accesslog"

// opsLeadAllButOne makes broker 0 lead every partition of topics except
// partition one of topic `odd`, which broker 1 leads (none when odd is "").
func opsLeadAllButOne(t *testing.T, k *opsKafka, topics []string, partitions int32, odd string) {
	t.Helper()
	for _, topic := range topics {
		for p := range partitions {
			node := int32(0)
			if topic == odd && p == 1 {
				node = 1
			}
			require.NoError(t, k.c.MoveTopicPartition(topic, p, node))
		}
	}
}

// opsStatus reads /api/v1/status.
type opsStatusDoc struct {
	Ready     bool       `json:"ready"`
	Watermark *time.Time `json:"watermark"`
	Ingest    struct {
		WarmedUp bool     `json:"warmed_up"`
		Missing  []string `json:"missing_topics"`
		Stalled  []struct {
			Topic     string `json:"topic"`
			Partition int    `json:"partition"`
			Requests  bool   `json:"requests"`
			Reason    string `json:"reason"`
		} `json:"partitions_stalled"`
	} `json:"ingest"`
}

func (h opsHTTP) Status(t *testing.T) opsStatusDoc {
	t.Helper()
	code, body := h.Get(t, "/api/v1/status")
	require.Equal(t, http.StatusOK, code, body)
	var s opsStatusDoc
	require.NoError(t, json.Unmarshal([]byte(body), &s), body)
	return s
}

// TestOpsPartitionLeaderRefuses: the leader of one access-log partition
// refuses connections from the start. Within kafka.max_partition_stall the
// partition is set aside (gauge, status), the daemon becomes ready and
// evaluates the others, and the finding it fires says that request rates
// may read low.
func TestOpsPartitionLeaderRefuses(t *testing.T) {
	const bound = 3 * time.Second
	k := opsStartKafkaN(t, 2, 2, opsTopics)
	opsLeadAllButOne(t, k, opsTopics, 2, opsAccessLog)
	f := opsStartFeeder(t, k, opsFeed{Scenario: "spillover-jobrunner", Seed: 4, SinceOnset: 12 * time.Minute, Live: 10 * time.Minute, Rate: 20})
	<-f.Caught()
	k.lns[1].Down()
	cfg := opsWriteFile(t, t.TempDir(), "detector.yml", opsConfig{Brokers: k.Addr(), MaxPartitionStall: bound}.YAML())
	start := time.Now()
	d := opsStartDaemon(t, opsDaemonOptions{ConfigFile: cfg})
	h := d.HTTP()
	h.WaitReady(t, bound+30*time.Second)
	took := time.Since(start)
	t.Logf("ready %s after the start, with partition 1 of %s unreachable (bound %s)", took.Round(time.Millisecond), opsAccessLog, bound)
	require.GreaterOrEqual(t, took, bound, "the partition held the warm-up for the bound")

	m := h.Metrics(t)
	require.Equal(t, 1.0, m.Sum("detector_ingest_partitions_stalled", "topic", opsAccessLog))
	require.Equal(t, 0.0, m.Sum("detector_ingest_partitions_stalled", "topic", "k8s-mw-eqiad"))
	s := h.Status(t)
	require.True(t, s.Ready)
	require.Len(t, s.Ingest.Stalled, 1)
	require.Equal(t, opsAccessLog, s.Ingest.Stalled[0].Topic)
	require.Equal(t, 1, s.Ingest.Stalled[0].Partition)
	require.Equal(t, "unreadable", s.Ingest.Stalled[0].Reason)
	require.True(t, s.Ingest.Stalled[0].Requests)

	fd := h.WaitFinding(t, detect.KindSharedDataSpillover, 30*time.Second)
	require.Contains(t, fd.Evidence.Note, "set aside", "the finding says its rates may read low")
	require.Contains(t, fd.Evidence.Note, opsAccessLog+"/1")
	n1 := opsHistCount(h.Metrics(t), "detector_detect_evaluation_duration_seconds")
	require.Eventually(t, func() bool {
		return opsHistCount(h.Metrics(t), "detector_detect_evaluation_duration_seconds") > n1+2
	}, 10*time.Second, 50*time.Millisecond, "evaluation goes on without the partition")
	require.Contains(t, d.Logs.String(), "Partition set aside")
}

// TestOpsLateTopicDoesNotPause: a topic created after the start, empty and
// whose partitions cannot be read yet (their leader is away), does not stop
// the evaluation of the others: the evaluation count keeps rising and the
// daemon stays ready.
func TestOpsLateTopicDoesNotPause(t *testing.T) {
	const late = "k8s-mw-codfw"
	present := []string{"k8s-mw-eqiad", opsAccessLog}
	k := opsStartKafkaN(t, 2, 1, present)
	opsLeadAllButOne(t, k, present, 1, "")
	f := opsStartFeeder(t, k, opsFeed{Scenario: "quiet", Seed: 3, Past: 10 * time.Minute, Live: 5 * time.Minute, Rate: 20, Mix: opsOnlyEqiad})
	<-f.Caught()
	cfg := opsWriteFile(t, t.TempDir(), "detector.yml", opsConfig{Brokers: k.Addr(), TopicRecheck: time.Second}.YAML())
	d := opsStartDaemon(t, opsDaemonOptions{ConfigFile: cfg})
	h := d.HTTP()
	h.WaitReady(t, 60*time.Second)

	k.lns[1].Down()
	require.NoError(t, k.c.CreateTopic(late, 2, nil))
	for p := range int32(2) {
		require.NoError(t, k.c.MoveTopicPartition(late, p, 1))
	}
	require.Eventually(t, func() bool {
		return h.Metrics(t).Sum("detector_ingest_partitions", "topic", late) == 2
	}, 20*time.Second, 50*time.Millisecond, "the new topic is found")
	before := opsHistCount(h.Metrics(t), "detector_detect_evaluation_duration_seconds")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		code, body := h.Get(t, "/-/ready")
		require.Equal(t, http.StatusOK, code, body)
		time.Sleep(100 * time.Millisecond)
	}
	after := opsHistCount(h.Metrics(t), "detector_detect_evaluation_duration_seconds")
	t.Logf("%d evaluations in 5 s while the new topic could not be read", after-before)
	require.Greater(t, after, before+5, "the evaluation count keeps rising")
	require.Contains(t, d.Logs.String(), "Partition read interrupted; reconnecting")
}

// TestOpsRequestPartitionStalled: one access-log partition cannot be
// fetched for 60 s after the warm-up (less than kafka.max_partition_stall)
// while traffic goes on. Its buckets are never evaluated without it: the
// evaluated watermark stays at what it had read less the allowed lateness,
// and moves on once it reads again.
func TestOpsRequestPartitionStalled(t *testing.T) {
	stall := 60 * time.Second
	const lateness = 30 * time.Second
	k, _, _, h := opsQuietLiveDaemon(t)

	fault := k.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: opsAccessLog, Partitions: []int32{1}, Err: kerr.NotLeaderForPartition, Count: -1})
	// Everything partition 1 had read was written before now: the
	// watermark may not pass now − lateness until it reads again.
	stalledAt := time.Now()
	limit := stalledAt.Add(-lateness).Add(time.Second) // a second for the Kafka time of a batch in flight
	var last time.Time
	for time.Since(stalledAt) < stall {
		s := h.Status(t)
		require.True(t, s.Ready, "ready: evaluation runs")
		require.Empty(t, s.Ingest.Stalled, "not set aside within the bound")
		if s.Watermark != nil {
			last = *s.Watermark
			require.False(t, last.After(limit), "after %s of the stall the watermark is %s, past what the stalled partition read (%s − lateness)",
				time.Since(stalledAt).Round(time.Second), last.Format(time.TimeOnly), stalledAt.Format(time.TimeOnly))
		}
		time.Sleep(500 * time.Millisecond)
	}
	require.Positive(t, fault.Hits(), "the partition's fetches were refused")
	fault.Remove()
	require.Eventually(t, func() bool {
		s := h.Status(t)
		return s.Watermark != nil && s.Watermark.After(stalledAt)
	}, 30*time.Second, 200*time.Millisecond, "the watermark moves on once the partition reads again")
	t.Logf("watermark held at %s during the %s stall (limit %s)", last.Format(time.TimeOnly), stall, limit.Format(time.TimeOnly))
	require.Zero(t, h.Metrics(t).Sum("detector_ingest_partitions_stalled"))
}
