package ingest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

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
			{Cluster: "t", Brokers: c.ListenAddrs(), Dialer: NewDialer("t", nil, nil), Topic: "a", Format: FormatAccessLog},
			{Cluster: "t", Brokers: c.ListenAddrs(), Dialer: NewDialer("t", nil, nil), Topic: "b", Format: FormatMediaWikiLog},
		},
		Start:   time.Now().Add(-time.Hour),
		NewSink: func() Sink { return collect{&mu, &[]Event{}, new(int)} },
		NewDecoder: func(f Format) (*Decoder, error) {
			return NewDecoder(f, wikis, NewInterner(), NewInterner(), DecoderOptions{})
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
