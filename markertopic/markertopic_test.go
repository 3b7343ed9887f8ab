package markertopic

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/wikimedia/pretrain-detector/window"
)

const topic = "pretrain-detector.deploy-markers"

// replica is one reader with the timeline it fills.
type replica struct {
	r    *Reader
	reg  *prometheus.Registry
	mu   sync.Mutex
	got  []window.Deploy
	stop func()
}

func (rp *replica) deploys() []window.Deploy {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return slices.Clone(rp.got)
}

func startReplica(t *testing.T, brokers []string, since time.Time) *replica {
	t.Helper()
	rp := &replica{reg: prometheus.NewRegistry()}
	r, err := NewReader(Options{
		Brokers: brokers, Topic: topic, Since: since, MaxAge: 2 * time.Hour, MaxAhead: 5 * time.Minute,
		Recheck: 100 * time.Millisecond, MaxWait: 100 * time.Millisecond, Registry: rp.reg,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Apply: func(d window.Deploy) error {
			rp.mu.Lock()
			defer rp.mu.Unlock()
			rp.got = append(rp.got, d)
			return nil
		},
	})
	require.NoError(t, err)
	rp.r = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	var once sync.Once
	rp.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(rp.stop)
	return rp
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// TestReplicasAndRestartAgree: one marker written once reaches two readers
// (two replicas) and a reader started afterwards (a restart); records that
// are not markers, or whose at lies far from their own time, are counted and
// skipped; a record from before Since is not read.
func TestReplicasAndRestartAgree(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	require.NoError(t, err)
	defer c.Close()
	brokers := c.ListenAddrs()
	now := time.Now().UTC().Truncate(time.Second)

	// A record from three hours ago: before Since, never read.
	rawTransport := &kafka.Transport{}
	defer rawTransport.CloseIdleConnections()
	raw := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, BatchTimeout: time.Millisecond, Transport: rawTransport}
	defer func() { require.NoError(t, raw.Close()) }()
	require.NoError(t, raw.WriteMessages(context.Background(), kafka.Message{Time: now.Add(-3 * time.Hour),
		Value: []byte(`{"scope":"train","group":"group0","version":"old","at":"` + now.Add(-3*time.Hour).Format(time.RFC3339) + `"}`)}))

	a := startReplica(t, brokers, now.Add(-2*time.Hour))
	b := startReplica(t, brokers, now.Add(-2*time.Hour))
	require.Eventually(t, func() bool { return a.r.CaughtUp() && b.r.CaughtUp() }, 10*time.Second, 10*time.Millisecond)
	require.Empty(t, a.deploys())

	w, err := NewWriter(Options{Brokers: brokers, Topic: topic, Registry: prometheus.NewRegistry()})
	require.NoError(t, err)
	defer func() { require.NoError(t, w.Close()) }()
	m := Marker{Scope: "pretrain", Version: "1.48.0-alpha", At: now.Add(-time.Minute), By: "releng@10.0.0.1:5555"}
	require.NoError(t, w.Write(context.Background(), m))
	want, err := window.NewMarker("pretrain", "", "1.48.0-alpha", m.At, Source)
	require.NoError(t, err)

	// Garbage, a marker without version, and 1,000 markers dated far
	// ahead of their records, written past the API.
	bad := []kafka.Message{
		{Time: now, Value: []byte(`not json`)},
		{Time: now, Value: []byte(`{"scope":"train","version":"","at":"` + now.Format(time.RFC3339) + `"}`)},
	}
	for i := range 1000 {
		bad = append(bad, kafka.Message{Time: now, Value: fmt.Appendf(nil, `{"scope":"train","group":"group1","version":"1.99.0-wmf.%d","at":"2199-01-01T00:00:00Z"}`, i)})
	}
	require.NoError(t, raw.WriteMessages(context.Background(), bad...))

	for _, rp := range []*replica{a, b} {
		require.Eventually(t, func() bool { return len(rp.deploys()) == 1 }, 10*time.Second, 10*time.Millisecond)
		require.Eventually(t, func() bool { return testutil.ToFloat64(rp.r.rejected.WithLabelValues("time")) == 1000 }, 10*time.Second, 10*time.Millisecond)
		require.Equal(t, []window.Deploy{want}, rp.deploys())
		require.Equal(t, 1.0, testutil.ToFloat64(rp.r.rejected.WithLabelValues("json")))
		require.Equal(t, 1.0, testutil.ToFloat64(rp.r.rejected.WithLabelValues("field")))
		require.Equal(t, 1.0, testutil.ToFloat64(rp.r.applied))
	}
	a.stop()

	restarted := startReplica(t, brokers, now.Add(-2*time.Hour))
	require.Eventually(t, func() bool { return restarted.r.CaughtUp() }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, []window.Deploy{want}, restarted.deploys(), "caught up means the markers are in")
}

// TestMissingTopic: without the topic the reader is caught up (nothing to
// wait for) and picks the topic up once it exists; the writer fails.
func TestMissingTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer c.Close()
	brokers := c.ListenAddrs()
	rp := startReplica(t, brokers, time.Now().Add(-2*time.Hour))
	require.Eventually(t, rp.r.CaughtUp, 10*time.Second, 10*time.Millisecond)

	w, err := NewWriter(Options{Brokers: brokers, Topic: topic, Registry: prometheus.NewRegistry()})
	require.NoError(t, err)
	defer func() { require.NoError(t, w.Close()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	require.Error(t, w.Write(ctx, Marker{Scope: "train", Version: "x", At: time.Now()}))

	adminTransport := &kafka.Transport{}
	defer adminTransport.CloseIdleConnections()
	admin := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: adminTransport}
	_, err = admin.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}})
	require.NoError(t, err)
	// The writer's metadata is cached; it sees the new topic within its TTL.
	require.Eventually(t, func() bool {
		return w.Write(context.Background(), Marker{Scope: "train", Group: "group1", Version: "1.47.0-wmf.20", At: time.Now()}) == nil
	}, 20*time.Second, 200*time.Millisecond)
	require.Eventually(t, func() bool { return len(rp.deploys()) == 1 }, 10*time.Second, 10*time.Millisecond)
}

// TestOffsetOutOfRange: a partition whose records before the reader's next
// offset were deleted (retention) is read on from its first offset.
func TestOffsetOutOfRange(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	require.NoError(t, err)
	defer c.Close()
	brokers := c.ListenAddrs()
	w, err := NewWriter(Options{Brokers: brokers, Topic: topic, Registry: prometheus.NewRegistry()})
	require.NoError(t, err)
	now := time.Now().UTC().Truncate(time.Second)
	for i := range 3 {
		require.NoError(t, w.Write(context.Background(), Marker{Scope: "train", Group: "group0", Version: fmt.Sprint("1.47.0-wmf.", i), At: now}))
	}
	require.NoError(t, w.Close())

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	defer cl.Close()
	req := kmsg.NewPtrDeleteRecordsRequest()
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 0, 2
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	require.NoError(t, err)
	require.Zero(t, resp.Topics[0].Partitions[0].ErrorCode)

	var mu sync.Mutex
	var got []string
	r, err := NewReader(Options{Brokers: brokers, Topic: topic, MaxAge: time.Hour, MaxAhead: time.Minute, MaxWait: 50 * time.Millisecond,
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Apply: func(d window.Deploy) error { mu.Lock(); defer mu.Unlock(); got = append(got, d.Version); return nil }})
	require.NoError(t, err)
	// The reader stood at offset 0 when the records went.
	r.parts[0] = &partState{next: 0, end: 3}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.follow(ctx, 0) }()
	defer func() { cancel(); <-done; r.transport.CloseIdleConnections() }()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	require.Equal(t, []string{"1.47.0-wmf.2"}, got)
	mu.Unlock()
	require.Eventually(t, r.allDone, 5*time.Second, 10*time.Millisecond)
}
