package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// collect is a Sink that keeps what it is given.
type collect struct {
	mu     *sync.Mutex
	events *[]event.Event
	flush  *int
}

func (c collect) Add(ev *event.Event, _ *event.Detail) {
	c.mu.Lock()
	*c.events = append(*c.events, *ev)
	c.mu.Unlock()
}

func (c collect) Flush() {
	c.mu.Lock()
	*c.flush++
	c.mu.Unlock()
}

// recordTime reads a record's own timestamp so the Kafka timestamp agrees
// with it (as it does in production).
func recordTime(t *testing.T, rec []byte) time.Time {
	var m map[string]any
	require.NoError(t, json.Unmarshal(rec, &m))
	for _, k := range []string{"@timestamp", "timestamp"} {
		if s, ok := m[k].(string); ok {
			for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05"} {
				if ts, err := time.Parse(layout, s); err == nil {
					return ts
				}
			}
		}
	}
	t.Fatalf("no timestamp in %s", rec)
	return time.Time{}
}

// TestConsumerReadsEveryGoodRecordAndCountsEveryBadOne writes real-shaped
// records of two formats through kafka-go into an in-process broker with a
// bad record of each kind interleaved: every good record must arrive, every
// bad one must be counted under its reason, and the partition must go on.
func TestConsumerReadsEveryGoodRecordAndCountsEveryBadOne(t *testing.T) {
	const accessTopic, logTopic = "mediawiki.httpd.accesslog", "k8s-mw-eqiad"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, accessTopic, logTopic))
	require.NoError(t, err)
	defer c.Close()

	access := readLines(t, "accesslog.jsonl")
	logs := readLines(t, "mediawiki-k8s.jsonl")
	good := access[0]
	at := recordTime(t, good)
	bad := map[error][]byte{
		decode.ErrInvalidJSON:  []byte(`{"url.domain": "test.wikipedia.org", "http.response.status_code": `),
		decode.ErrWrongType:    bytes.Replace(good, []byte(`"url.domain":"test.wikipedia.org"`), []byte(`"url.domain":42`), 1),
		decode.ErrMissingField: bytes.Replace(good, []byte(`"url.domain":"test.wikipedia.org",`), nil, 1),
		decode.ErrUnknownWiki:  bytes.Replace(good, []byte(`"url.domain":"test.wikipedia.org"`), []byte(`"url.domain":"nowhere.example.org"`), 1),
		decode.ErrOversize:     append(append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), 70<<10)...), `"}`...),
		decode.ErrNonUTF8:      bytes.Replace(good, []byte(`"http.request.method":"GET"`), []byte("\"http.request.method\":\"G\xffT\""), 1),
	}
	jobrunner := bytes.Replace(good, []byte(`"url.domain":"test.wikipedia.org"`), []byte(`"url.domain":"mw-jobrunner.discovery.wmnet"`), 1)
	require.NotEqual(t, good, jobrunner)
	for reason, rec := range bad {
		if reason != decode.ErrInvalidJSON && reason != decode.ErrOversize {
			require.NotEqual(t, good, rec, "test data changed: %v not built", reason)
		}
	}

	var msgs []kafka.Message
	for round := 0; round < 20; round++ {
		for _, rec := range access {
			msgs = append(msgs, kafka.Message{Topic: accessTopic, Value: rec, Time: recordTime(t, rec)})
		}
		for _, rec := range logs {
			msgs = append(msgs, kafka.Message{Topic: logTopic, Value: rec, Time: recordTime(t, rec)})
		}
		if round == 10 {
			for _, reason := range decode.RejectReasons {
				if rec, ok := bad[reason]; ok {
					msgs = append(msgs, kafka.Message{Topic: accessTopic, Value: rec, Time: at})
				}
			}
			// A record whose own time is far from its Kafka time.
			msgs = append(msgs, kafka.Message{Topic: accessTopic, Value: good, Time: at.Add(3 * time.Hour)})
			// A jobrunner's line, well-formed but about no wiki: skipped, not rejected.
			msgs = append(msgs, kafka.Message{Topic: accessTopic, Value: jobrunner, Time: at})
		}
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections() // Writer.Close leaves its Transport's connections open
	w := &kafka.Writer{Addr: kafka.TCP(c.ListenAddrs()...), Transport: tr, Balancer: &kafka.RoundRobin{}, BatchBytes: 4 << 20}
	require.NoError(t, w.WriteMessages(context.Background(), msgs...))
	require.NoError(t, w.Close())
	tr.CloseIdleConnections()

	wikis, err := wikimap.Default()
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var mu sync.Mutex
	var events []event.Event
	flushes := 0
	versions, rollouts := event.NewInterner(), event.NewInterner()
	dialer := NewDialer("test", nil, nil)
	cons, err := NewConsumer(ConsumerOptions{
		Sources: []Source{
			{Cluster: "test", Brokers: c.ListenAddrs(), Dialer: dialer, Topic: accessTopic, Format: decode.FormatAccessLog},
			{Cluster: "test", Brokers: c.ListenAddrs(), Dialer: dialer, Topic: logTopic, Format: decode.FormatMediaWikiLog},
			{Cluster: "test", Brokers: c.ListenAddrs(), Dialer: dialer, Topic: "does-not-exist", Format: decode.FormatMediaWikiLog},
		},
		End:     time.Now().Add(24 * time.Hour),
		NewSink: func() Sink { return collect{&mu, &events, &flushes} },
		NewDecoder: func(f decode.Format) (*decode.Decoder, error) {
			return decode.New(f, wikis, versions, rollouts, decode.Options{MaxRecordBytes: 64 << 10})
		},
		MaxWait: 50 * time.Millisecond,
	}, slog.New(slog.DiscardHandler), m)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, cons.Run(ctx))
	require.True(t, cons.CaughtUp())

	// Every good record arrived: count what the decoders accept from one
	// pass over the samples, times the rounds.
	perRound := 0
	for _, rec := range access {
		if decodeOK(t, wikis, decode.FormatAccessLog, rec) {
			perRound++
		}
	}
	for _, rec := range logs {
		if decodeOK(t, wikis, decode.FormatMediaWikiLog, rec) {
			perRound++
		}
	}
	require.Positive(t, perRound)
	require.Len(t, events, 20*perRound)
	require.Positive(t, flushes)

	for _, reason := range decode.RejectReasons {
		want := 0.0
		if _, ok := bad[reason]; ok {
			want = 1
		}
		if reason == decode.ErrTimeRange {
			want = 1
		}
		require.Equal(t, want, testutil.ToFloat64(m.rejected.WithLabelValues(accessTopic, reason.Error())), reason.Error())
		require.Zero(t, testutil.ToFloat64(m.rejected.WithLabelValues(logTopic, reason.Error())), reason.Error())
	}
	require.Equal(t, float64(20*len(access)+len(bad)+2), testutil.ToFloat64(m.records.WithLabelValues(accessTopic)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.skipped.WithLabelValues(accessTopic, "no_wiki")), "the jobrunner line")
	require.Equal(t, 1.0, testutil.ToFloat64(m.missing.WithLabelValues("does-not-exist")))
	for _, topic := range []string{accessTopic, logTopic} {
		require.Zero(t, testutil.ToFloat64(m.connected.WithLabelValues(topic)), "%s: every connection is closed and uncounted once the replay ends", topic)
	}
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
}

func decodeOK(t *testing.T, wikis *wikimap.Map, f decode.Format, rec []byte) bool {
	d, err := decode.New(f, wikis, event.NewInterner(), event.NewInterner(), decode.Options{MaxRecordBytes: 64 << 10})
	require.NoError(t, err)
	var ev event.Event
	var det event.Detail
	return d.Decode(rec, recordTime(t, rec), &ev, &det) == nil
}

func TestConsumerFailsClearlyWithoutBroker(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	cons, err := NewConsumer(ConsumerOptions{
		Sources: []Source{{Cluster: "logging-eqiad", Brokers: []string{"127.0.0.1:1"}, Dialer: NewDialer("test", nil, nil), Topic: "t", Format: decode.FormatAccessLog}},
		NewSink: func() Sink { return collect{&sync.Mutex{}, &[]event.Event{}, new(int)} },
		NewDecoder: func(f decode.Format) (*decode.Decoder, error) {
			return decode.New(f, wikis, event.NewInterner(), event.NewInterner(), decode.Options{})
		},
	}, slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	err = cons.Run(context.Background())
	require.ErrorIs(t, err, ErrNoBroker)
	require.True(t, strings.Contains(err.Error(), "logging-eqiad"), err.Error())
}
