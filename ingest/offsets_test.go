package ingest

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// offsetsFixture is a one-partition access-log topic in kfake, a Consumer
// following it live (no End) and a switch that drops every fetch, as a
// broker that is away does.
type offsetsFixture struct {
	c      *kfake.Cluster
	cons   *Consumer
	m      *Metrics
	events *[]event.Event
	mu     *sync.Mutex
	drop   atomic.Bool
	drops  atomic.Int64
	good   []byte
	at     time.Time
	cancel context.CancelFunc
	done   chan error
}

const offsetsTopic = "mediawiki.httpd.accesslog"

func newOffsetsFixture(t *testing.T) *offsetsFixture {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, offsetsTopic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	f := &offsetsFixture{c: c, events: &[]event.Event{}, mu: &sync.Mutex{}, done: make(chan error, 1)}
	f.good = readLines(t, "accesslog.jsonl")[0]
	f.at = recordTime(t, f.good)
	// Fetches and offset look-ups: what the reader asks of a broker (the
	// test's writer needs neither).
	for _, key := range []kmsg.Key{kmsg.Fetch, kmsg.ListOffsets} {
		c.ControlKey(key.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			if f.drop.Load() {
				f.drops.Add(1)
				return nil, errors.New("the test drops fetches"), true
			}
			return nil, nil, false
		})
	}
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	f.m = NewMetrics(prometheus.NewRegistry())
	flushes := 0
	f.cons, err = NewConsumer(ConsumerOptions{
		Sources: []Source{{Cluster: "test", Brokers: c.ListenAddrs(), Dialer: NewDialer("test", nil, nil), Topic: offsetsTopic, Format: decode.FormatAccessLog}},
		Start:   f.at.Add(-time.Hour),
		NewSink: func() Sink { return collect{f.mu, f.events, &flushes} },
		NewDecoder: func(fm decode.Format) (*decode.Decoder, error) {
			return decode.New(fm, wikis, event.NewInterner(), event.NewInterner(), decode.Options{})
		},
		MaxWait: 50 * time.Millisecond,
	}, slog.New(slog.DiscardHandler), f.m)
	require.NoError(t, err)
	return f
}

// start starts the consumer (after the first records are written: a
// partition empty at its first look starts at its end).
func (f *offsetsFixture) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.done <- f.cons.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-f.done
	})
}

// write writes n records, each a distinct request (its status is i), and
// returns nothing until the broker has them.
func (f *offsetsFixture) write(t *testing.T, from, n int) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(f.c.ListenAddrs()...), Transport: tr, Balancer: &kafka.RoundRobin{}, RequiredAcks: kafka.RequireOne}
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		v := bytes.Replace(f.good, []byte(`"http.response.status_code":"200"`), []byte(`"http.response.status_code":"`+statusOf(from+i)+`"`), 1)
		msgs[i] = kafka.Message{Topic: offsetsTopic, Value: v, Time: f.at.Add(time.Duration(from+i) * time.Millisecond)}
	}
	require.NoError(t, w.WriteMessages(context.Background(), msgs...))
	require.NoError(t, w.Close())
}

// statusOf numbers records through their HTTP status (200..699).
func statusOf(i int) string {
	return string(rune('2'+i/100)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
}

func (f *offsetsFixture) statuses() []uint16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]uint16, 0, len(*f.events))
	for _, ev := range *f.events {
		out = append(out, ev.Status)
	}
	return out
}

func (f *offsetsFixture) read() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(*f.events)
}

// waitDisconnected drops fetches until the reader has been refused a few
// times: its connection is gone and it is retrying.
func (f *offsetsFixture) waitDisconnected(t *testing.T) {
	t.Helper()
	f.drop.Store(true)
	n := f.drops.Load()
	require.Eventually(t, func() bool { return f.drops.Load() >= n+2 }, 20*time.Second, 10*time.Millisecond, "the reader retries")
}

// TestRecordsDeletedWhileAwayAreLost: records deleted below a disconnected
// reader's position (retention passing while the broker was away) are
// counted as lost, and reading goes on from the oldest retained record
// instead of retrying the vanished offset for ever.
func TestRecordsDeletedWhileAwayAreLost(t *testing.T) {
	f := newOffsetsFixture(t)
	f.write(t, 0, 100)
	f.start(t)
	require.Eventually(t, func() bool { return f.read() == 100 }, 20*time.Second, 10*time.Millisecond)

	f.waitDisconnected(t)
	f.write(t, 100, 100)
	require.NoError(t, f.c.DeleteRecords(offsetsTopic, 0, 150)) // 100..149 never read
	f.drop.Store(false)
	require.Eventually(t, func() bool { return f.read() == 150 }, 20*time.Second, 10*time.Millisecond, "reading goes on at the oldest retained record")
	require.Equal(t, 50.0, testutil.ToFloat64(f.m.lost.WithLabelValues(offsetsTopic, "retention")))
	require.Zero(t, testutil.ToFloat64(f.m.lost.WithLabelValues(offsetsTopic, "truncation")))
	st := f.statuses()
	require.Equal(t, statusOf(150), statusOf(int(st[100])-200), "the first record read after the gap is offset 150")

	f.write(t, 200, 10)
	require.Eventually(t, func() bool { return f.read() == 160 }, 20*time.Second, 10*time.Millisecond, "and follows the topic afterwards")
}

// TestTruncatedLogResumesAtItsEnd: a log that ends below the reader's
// position when it comes back (the topic recreated, or an unclean leader
// election) is read on from its high-water mark: the offsets that vanished
// are counted, nothing below the mark is read again, and later records are
// read.
func TestTruncatedLogResumesAtItsEnd(t *testing.T) {
	f := newOffsetsFixture(t)
	f.write(t, 0, 100)
	f.start(t)
	require.Eventually(t, func() bool { return f.read() == 100 }, 20*time.Second, 10*time.Millisecond)

	f.waitDisconnected(t)
	require.NoError(t, f.c.DeleteTopic(offsetsTopic))
	require.NoError(t, f.c.CreateTopic(offsetsTopic, 1, nil))
	f.write(t, 300, 40) // offsets 0..39 of the new log, below the position 100
	f.drop.Store(false)
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(f.m.lost.WithLabelValues(offsetsTopic, "truncation")) > 0
	}, 20*time.Second, 10*time.Millisecond, "the truncation is noticed")
	require.Equal(t, 60.0, testutil.ToFloat64(f.m.lost.WithLabelValues(offsetsTopic, "truncation")), "offsets 40..99 vanished")
	f.write(t, 400, 5)
	require.Eventually(t, func() bool { return f.read() == 105 }, 20*time.Second, 10*time.Millisecond, "records written after the truncation are read")
	st := f.statuses()
	require.Equal(t, uint16(600), st[100], "reading resumed at the high-water mark: offsets 0..39 of the new log were not read")
}
