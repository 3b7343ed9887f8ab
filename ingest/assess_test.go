package ingest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// TestAssessEmptyTopicsWarmUp: partitions of empty topics are caught up
// and idle at their first fetch, so the warm-up ends at once.
func TestAssessEmptyTopicsWarmUp(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "a", "b"))
	require.NoError(t, err)
	defer c.Close()
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	var mu sync.Mutex
	cons, err := NewConsumer(ConsumerOptions{
		Sources: []Source{
			{Cluster: "t", Brokers: c.ListenAddrs(), Dialer: NewDialer("t", nil, nil), Topic: "a", Format: decode.FormatAccessLog},
			{Cluster: "t", Brokers: c.ListenAddrs(), Dialer: NewDialer("t", nil, nil), Topic: "b", Format: decode.FormatMediaWikiLog},
		},
		Start:   time.Now().Add(-time.Hour),
		NewSink: func() Sink { return collect{&mu, &[]event.Event{}, new(int)} },
		NewDecoder: func(f decode.Format) (*decode.Decoder, error) {
			return decode.New(f, wikis, event.NewInterner(), event.NewInterner(), decode.Options{})
		},
		MaxWait: 50 * time.Millisecond,
	}, slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var a Assessment
	require.Eventually(t, func() bool {
		a = cons.Assess(time.Now(), 30*time.Second)
		if !a.WarmedUp {
			t.Logf("%+v", cons.debugParts())
		}
		return a.WarmedUp
	}, 10*time.Second, 20*time.Millisecond, "warm: %+v", cons.debugParts())
	require.Empty(t, a.SetAside)
}

func (c *Consumer) debugParts() []partState {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []partState
	for _, st := range c.parts {
		out = append(out, *st)
	}
	return out
}

// TestAssessHoldsSetsAsideAndRejoins walks the watermark rules on a
// consumer's partition states, without Kafka: a lagging partition holds
// the watermark; an idle one does not; one unreadable or behind for longer
// than the bound is set aside, counted and listed; it rejoins once it has
// caught up with what was judged.
func TestAssessHoldsSetsAsideAndRejoins(t *testing.T) {
	const bound = time.Minute
	const lateness = 30 * time.Second
	m := NewMetrics(prometheus.NewRegistry())
	src := Source{Cluster: "c", Topic: "access", Format: decode.FormatAccessLog}
	cons, err := NewConsumer(ConsumerOptions{Sources: []Source{src},
		NewSink:           func() Sink { return collect{&sync.Mutex{}, &[]event.Event{}, new(int)} },
		NewDecoder:        func(decode.Format) (*decode.Decoder, error) { return &decode.Decoder{}, nil },
		MaxPartitionStall: bound}, slog.New(slog.DiscardHandler), m)
	require.NoError(t, err)
	s := func(sec int64) int64 { return sec * 1e9 }
	t0 := time.Unix(1000, 0)
	p0 := &partState{key: partitionKey{"c", "access", 0}, requests: true, caught: true, idle: true, progress: s(100)}
	p1 := &partState{key: partitionKey{"c", "access", 1}, requests: true, failing: t0}
	cons.parts = map[partitionKey]*partState{p0.key: p0, p1.key: p1}
	cons.initialDone = true
	stalled := func() float64 { return testutil.ToFloat64(m.stalled.WithLabelValues("access")) }

	a := cons.Assess(t0.Add(time.Second), lateness)
	require.False(t, a.WarmedUp, "partition 1 has not been read yet")
	require.Zero(t, a.Low, "it holds the watermark at nothing")

	a = cons.Assess(t0.Add(bound+time.Second), lateness)
	require.True(t, a.WarmedUp, "set aside, it no longer holds the warm-up")
	require.Equal(t, s(100), a.Low, "the idle partition 0 does not hold the watermark; the newest read does")
	require.Len(t, a.SetAside, 1)
	require.Equal(t, "unreadable", a.SetAside[0].Reason)
	require.True(t, a.RequestsSetAside())
	require.Equal(t, 1.0, stalled())

	// Readable again but behind what was judged: still aside.
	p1.failing, p1.caught, p1.progress = time.Time{}, true, s(50)
	a = cons.Assess(t0.Add(bound+2*time.Second), lateness)
	require.Len(t, a.SetAside, 1)
	p1.progress = s(100)
	a = cons.Assess(t0.Add(bound+3*time.Second), lateness)
	require.Empty(t, a.SetAside, "caught up: it rejoins")
	require.Zero(t, stalled())

	// Both reading; partition 1 falls more than the lateness behind: it
	// holds the watermark for the bound, then is set aside.
	now := t0.Add(10 * time.Minute)
	p0.idle, p0.progress = false, s(200)
	p1.idle, p1.progress = false, s(150)
	a = cons.Assess(now, lateness)
	require.Equal(t, s(150), a.Low, "the lagging partition holds the watermark")
	a = cons.Assess(now.Add(bound/2), lateness)
	require.Equal(t, s(150), a.Low)
	require.Empty(t, a.SetAside)
	a = cons.Assess(now.Add(bound+time.Second), lateness)
	require.Equal(t, s(200), a.Low, "past the bound it is set aside")
	require.Len(t, a.SetAside, 1)
	require.Equal(t, "behind", a.SetAside[0].Reason)

	// Idle at its high-water mark, it rejoins and holds nothing.
	p1.idle = true
	a = cons.Assess(now.Add(bound+2*time.Second), lateness)
	require.Empty(t, a.SetAside)
	require.Equal(t, s(200), a.Low)

	// The watermark never goes back.
	p0.progress = s(190)
	a = cons.Assess(now.Add(bound+3*time.Second), lateness)
	require.Equal(t, s(200), a.Low)
}
