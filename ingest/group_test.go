package ingest

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

	"github.com/wikimedia/pretrain-detector/wikimap"
)

// deliveries is a TimedSink factory that records, per member, the Kafka
// timestamp of every record read (the tests give each record a distinct
// one) and the events added.
type deliveries struct {
	mu     sync.Mutex
	times  map[int64]int // Kafka time → times read
	events int
}

func newDeliveries() *deliveries { return &deliveries{times: map[int64]int{}} }

func (d *deliveries) sink() Sink { return &deliverySink{d: d} }

func (d *deliveries) snapshot() (map[int64]int, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[int64]int, len(d.times))
	for k, v := range d.times {
		out[k] = v
	}
	return out, d.events
}

// deliverySink buffers like a real sink and publishes on Flush, so a test
// sees only what the group consumer would commit.
type deliverySink struct {
	d      *deliveries
	times  []int64
	events int
}

func (s *deliverySink) Record(kt int64)     { s.times = append(s.times, kt) }
func (s *deliverySink) Add(*Event, *Detail) { s.events++ }
func (s *deliverySink) Done()               {}
func (s *deliverySink) Flush() {
	s.d.mu.Lock()
	for _, t := range s.times {
		s.d.times[t]++
	}
	s.d.events += s.events
	s.d.mu.Unlock()
	s.times, s.events = s.times[:0], 0
}

// groupEnv is a kfake cluster with one 4-partition access-log topic.
type groupEnv struct {
	t       *testing.T
	cluster *kfake.Cluster
	topic   string
	wikis   *wikimap.Map
	good    []byte
	base    time.Time
	written int
}

func newGroupEnv(t *testing.T) *groupEnv {
	const topic = "mediawiki.httpd.accesslog"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	good := readLines(t, "accesslog.jsonl")[0]
	return &groupEnv{t: t, cluster: c, topic: topic, wikis: wikis, good: good, base: recordTime(t, good)}
}

// write produces n good records, with Kafka times base+i ms continuing
// from earlier writes, spread over every partition, plus the given raw
// records; it returns the Kafka times of the good ones.
func (e *groupEnv) write(n int, extra ...[]byte) []int64 {
	var msgs []kafka.Message
	var times []int64
	for range n {
		at := e.base.Add(time.Duration(e.written) * time.Millisecond)
		e.written++
		times = append(times, at.UnixNano())
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "req-%d", e.written), Value: e.good, Time: at})
	}
	for _, x := range extra {
		// Before every good record's time, so it is told apart from them.
		msgs = append(msgs, kafka.Message{Key: []byte("bad"), Value: x, Time: e.base.Add(-time.Second)})
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(e.cluster.ListenAddrs()...), Topic: e.topic, Transport: tr, Balancer: &kafka.RoundRobin{}, RequiredAcks: kafka.RequireOne}
	require.NoError(e.t, w.WriteMessages(context.Background(), msgs...))
	require.NoError(e.t, w.Close())
	return times
}

type member struct {
	gc     *GroupConsumer
	d      *deliveries
	m      *Metrics
	gm     *GroupMetrics
	cancel context.CancelFunc
	done   chan error
}

func (e *groupEnv) start(group string) *member {
	reg := prometheus.NewRegistry()
	mb := &member{d: newDeliveries(), m: NewMetrics(reg), gm: NewGroupMetrics(reg), done: make(chan error, 1)}
	versions, rollouts := NewInterner(), NewInterner()
	gc, err := NewGroupConsumer(GroupOptions{
		GroupID: group,
		Sources: []Source{{Cluster: "logging", Brokers: e.cluster.ListenAddrs(), Dialer: NewDialer("test", nil, nil), Topic: e.topic, Format: FormatAccessLog}},
		NewSink: mb.d.sink,
		NewDecoder: func(f Format) (*Decoder, error) {
			return NewDecoder(f, e.wikis, versions, rollouts, DecoderOptions{})
		},
		MaxWait: 50 * time.Millisecond, CommitInterval: 100 * time.Millisecond,
		HeartbeatInterval: 500 * time.Millisecond, SessionTimeout: 6 * time.Second, RebalanceTimeout: 6 * time.Second,
	}, slog.New(slog.DiscardHandler), mb.m, mb.gm)
	require.NoError(e.t, err)
	mb.gc = gc
	ctx, cancel := context.WithCancel(context.Background())
	mb.cancel = cancel
	go func() { mb.done <- gc.Run(ctx) }()
	e.t.Cleanup(func() { mb.stop(e.t) })
	return mb
}

// stop cancels the member and waits for it to commit and leave. Safe to
// call twice.
func (mb *member) stop(t *testing.T) {
	if mb.cancel == nil {
		return
	}
	mb.cancel()
	mb.cancel = nil
	select {
	case err := <-mb.done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("group consumer did not stop")
	}
}

func partitionsOf(a map[string][]int, topic string) []int { return a[topic] }

// TestGroupConsumerMembersSplitPartitions starts two members of one group:
// once they have rebalanced, each reads two of the four partitions, and
// every record written afterwards is delivered exactly once between them
// (no rebalance happens while they read); a bad record is counted, not
// delivered, and does not stop its partition.
func TestGroupConsumerMembersSplitPartitions(t *testing.T) {
	e := newGroupEnv(t)
	a := e.start("aggregate")
	b := e.start("aggregate")

	require.Eventually(t, func() bool {
		pa, pb := partitionsOf(a.gc.Assigned(), e.topic), partitionsOf(b.gc.Assigned(), e.topic)
		all := slices.Sorted(slices.Values(append(slices.Clone(pa), pb...)))
		return len(pa) == 2 && len(pb) == 2 && slices.Equal(all, []int{0, 1, 2, 3})
	}, 20*time.Second, 50*time.Millisecond, "the two members never split the four partitions")

	const n = 400
	want := e.write(n, []byte(`{"url.domain": "test.wikipedia.org", "http.response.status_code": `))
	require.Eventually(t, func() bool {
		ta, _ := a.d.snapshot()
		tb, _ := b.d.snapshot()
		return len(ta)+len(tb) == n+1 // the bad record is read (Record) too
	}, 20*time.Second, 50*time.Millisecond)

	ta, ea := a.d.snapshot()
	tb, eb := b.d.snapshot()
	require.NotEmpty(t, ta, "member a read nothing")
	require.NotEmpty(t, tb, "member b read nothing")
	for _, at := range want {
		require.Equal(t, 1, ta[at]+tb[at], "record at %d delivered %d+%d times", at, ta[at], tb[at])
	}
	require.Equal(t, n, ea+eb, "every good record decodes into an event")
	rejected := testutil.ToFloat64(a.m.rejected.WithLabelValues(e.topic, ErrInvalidJSON.Error())) +
		testutil.ToFloat64(b.m.rejected.WithLabelValues(e.topic, ErrInvalidJSON.Error()))
	require.Equal(t, 1.0, rejected)
	require.Equal(t, 2.0, testutil.ToFloat64(a.m.partitions.WithLabelValues(e.topic)))
	require.Eventually(t, func() bool { return testutil.ToFloat64(a.m.connected.WithLabelValues(e.topic)) == 2 }, 10*time.Second, 20*time.Millisecond,
		"both of member a's partitions are connected")
	require.GreaterOrEqual(t, testutil.ToFloat64(a.gm.generations), 1.0)
}

// TestGroupConsumerHandsOverAtCommittedOffsets checks the at-least-once
// hand-over: a member reads, commits and leaves; the member that takes the
// partitions over starts at the committed offsets, so it gets every
// record written since and none that was already processed.
func TestGroupConsumerHandsOverAtCommittedOffsets(t *testing.T) {
	e := newGroupEnv(t)
	a := e.start("aggregate")
	first := e.write(200)
	require.Eventually(t, func() bool {
		ta, _ := a.d.snapshot()
		return len(ta) == len(first)
	}, 20*time.Second, 50*time.Millisecond)
	a.stop(t)
	require.Positive(t, testutil.ToFloat64(a.gm.commits))
	require.Zero(t, testutil.ToFloat64(a.gm.commitErrors))
	require.Empty(t, a.gc.Assigned())

	second := e.write(300)
	b := e.start("aggregate")
	require.Eventually(t, func() bool {
		tb, _ := b.d.snapshot()
		return len(tb) >= len(second)
	}, 20*time.Second, 50*time.Millisecond)
	tb, _ := b.d.snapshot()
	for _, at := range second {
		require.Equal(t, 1, tb[at], "record at %d", at)
	}
	for _, at := range first {
		require.Zero(t, tb[at], "record at %d was processed and committed by a, yet b read it again", at)
	}

	// A member of another group reads everything: groups are independent.
	c := e.start("another")
	require.Eventually(t, func() bool {
		tc, _ := c.d.snapshot()
		return len(tc) == len(first)+len(second)
	}, 20*time.Second, 50*time.Millisecond)
}

func TestNewGroupConsumerRejectsBadOptions(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	newDec := func(f Format) (*Decoder, error) {
		return NewDecoder(f, wikis, NewInterner(), NewInterner(), DecoderOptions{})
	}
	src := func(cluster, topic string) Source {
		return Source{Cluster: cluster, Brokers: []string{cluster + ":9092"}, Topic: topic, Format: FormatAccessLog}
	}
	ok := GroupOptions{GroupID: "g", Sources: []Source{src("logging", "a")}, NewSink: newDeliveries().sink, NewDecoder: newDec}
	for _, tc := range []struct {
		name   string
		change func(*GroupOptions)
		want   string
	}{
		{"valid", func(*GroupOptions) {}, ""},
		{"no group id", func(o *GroupOptions) { o.GroupID = "" }, "GroupID is empty"},
		{"no topics", func(o *GroupOptions) { o.Sources = nil }, "no topics"},
		{"no sink", func(o *GroupOptions) { o.NewSink = nil }, "NewSink"},
		{"two clusters", func(o *GroupOptions) { o.Sources = append(o.Sources, src("jumbo", "b")) }, "one cluster"},
		{"topic twice", func(o *GroupOptions) { o.Sources = append(o.Sources, src("logging", "a")) }, "listed twice"},
		{"bad format", func(o *GroupOptions) { o.Sources[0].Format = "csv" }, "unknown record format"},
		{"bad start offset", func(o *GroupOptions) { o.StartOffset = 42 }, "StartOffset"},
		{"last offset", func(o *GroupOptions) { o.StartOffset = kafka.LastOffset }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			o.Sources = slices.Clone(ok.Sources)
			tc.change(&o)
			reg := prometheus.NewRegistry()
			_, err := NewGroupConsumer(o, slog.New(slog.DiscardHandler), NewMetrics(reg), NewGroupMetrics(reg))
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}
