package simulate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

func TestKafkaSink(t *testing.T) {
	topics := []string{"k8s-mw-eqiad", "k8s-mw-codfw", DefaultAccessLog}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topics...))
	require.NoError(t, err)
	defer c.Close()

	for _, tc := range []struct {
		name        string
		async       bool
		producer    bool
		compression compress.Compression
		maxInflight int64
	}{
		{name: "sync"},
		{name: "async", async: true},
		{name: "producer", producer: true, compression: DefaultProducerCompression},
		// A small bound: the Sink waits for the broker on most batches.
		{name: "producer-uncompressed-bounded", producer: true, maxInflight: 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Read from where the topics end now, so the subtests do not see
			// each other's records.
			starts := endOffsets(t, c.ListenAddrs()[0], topics)
			transport := &kafka.Transport{}
			defer transport.CloseIdleConnections()
			var sink Sink
			var flush func() error
			if tc.producer {
				p, err := NewProducer(ProducerOptions{Brokers: c.ListenAddrs(), Compression: tc.compression,
					MaxInflight: tc.maxInflight, Transport: transport})
				require.NoError(t, err)
				sink, flush = p.Sink(), p.Close
			} else {
				w := &kafka.Writer{
					Addr: kafka.TCP(c.ListenAddrs()...), Transport: transport, Balancer: &kafka.Hash{},
					BatchSize: 1000, BatchTimeout: 5 * time.Millisecond, Async: tc.async,
					// With kafka-go's default RequireNone nothing waits for the
					// broker, so requests on different connections may land out
					// of order.
					RequiredAcks: kafka.RequireAll,
				}
				sink, flush = KafkaSink(w), w.Close // Close flushes an Async writer
			}
			// fleet-db-incident puts errors on both DC topics; a low rate keeps
			// the two hours small.
			cfg := Config{Scenario: "fleet-db-incident", Seed: 4, Rate: 3, TestwikiRate: 0.5, BatchSize: 500}
			want := map[string]Record{}
			tee := func(sink Sink) Sink {
				return func(ctx context.Context, batch []Record) error {
					for _, r := range batch {
						want[r.Topic+"\x00"+string(r.Value)] = Record{Topic: r.Topic, Key: append([]byte(nil), r.Key...), Time: r.Time}
					}
					return sink(ctx, batch)
				}
			}
			_, err := Run(context.Background(), cfg, testMap(t), tee(sink))
			require.NoError(t, err)
			require.NoError(t, flush())
			perTopic := map[string]int{}
			for _, r := range want {
				perTopic[r.Topic]++
			}
			for _, topic := range topics {
				require.Positive(t, perTopic[topic], topic)
			}

			ends := endOffsets(t, c.ListenAddrs()[0], topics)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			partOfKey := map[string]int{}
			for _, topic := range topics {
				for p := range 2 {
					r := kafka.NewReader(kafka.ReaderConfig{Brokers: c.ListenAddrs(), Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
					require.NoError(t, r.SetOffset(starts[topic][p]))
					var last time.Time
					for off := starts[topic][p]; off < ends[topic][p]; off++ {
						m, err := r.ReadMessage(ctx)
						require.NoError(t, err)
						rec, ok := want[topic+"\x00"+string(m.Value)]
						require.True(t, ok, "unexpected message on %s: %s", topic, m.Value)
						require.Equal(t, rec.Key, m.Key)
						require.True(t, rec.Time.Truncate(time.Millisecond).Equal(m.Time), "Kafka timestamp = event time (ms)")
						require.False(t, m.Time.Before(last), "a partition is in event-time order: %v after %v at offset %d p %d %s", m.Time, last, m.Offset, p, topic)
						last = m.Time
						if prev, ok := partOfKey[topic+string(m.Key)]; ok {
							require.Equal(t, prev, p, "a key always goes to the same partition")
						}
						partOfKey[topic+string(m.Key)] = p
						delete(want, topic+"\x00"+string(m.Value))
					}
					require.NoError(t, r.Close())
				}
			}
			require.Empty(t, want, "every record arrived")
		})
	}
}

func TestKafkaSinkRejectsWriterTopic(t *testing.T) {
	w := &kafka.Writer{Addr: kafka.TCP("127.0.0.1:1"), Topic: "x"}
	err := KafkaSink(w)(context.Background(), []Record{{Topic: "y", Value: []byte("{}")}})
	require.Error(t, err)
	require.Contains(t, err.Error(), "Topic")
	require.NoError(t, w.Close())
	require.False(t, errors.Is(err, ErrConfig))
}

// endOffsets returns each partition's next offset.
func endOffsets(t *testing.T, addr string, topics []string) map[string][]int64 {
	t.Helper()
	out := map[string][]int64{}
	for _, topic := range topics {
		for p := range 2 {
			conn, err := kafka.DialLeader(context.Background(), "tcp", addr, topic, p)
			require.NoError(t, err)
			last, err := conn.ReadLastOffset()
			require.NoError(t, err)
			require.NoError(t, conn.Close())
			out[topic] = append(out[topic], last)
		}
	}
	return out
}

// TestProducerReportsWriteErrors: a record the Writer refuses (above the
// broker's message.max.bytes) is an error of that Sink call, of every later
// one and of Close.
func TestProducerReportsWriteErrors(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	require.NoError(t, err)
	defer c.Close()
	p, err := NewProducer(ProducerOptions{Brokers: c.ListenAddrs()})
	require.NoError(t, err)
	sink := p.Sink()
	ctx := context.Background()
	require.NoError(t, sink(ctx, []Record{{Topic: "t", Key: []byte("k"), Value: []byte("{}"), Time: time.Now()}}))
	big := make([]byte, 2<<20)
	err = sink(ctx, []Record{{Topic: "t", Key: []byte("k"), Value: big, Time: time.Now()}})
	require.ErrorContains(t, err, "writing 1 records to kafka")
	require.ErrorIs(t, sink(ctx, []Record{{Topic: "t", Value: []byte("{}")}}), err, "the first error stays")
	require.ErrorIs(t, p.Close(), err)
	require.Equal(t, int64(1), p.Written())
}

// TestParseCompression: every name the flags offer maps to a codec whose
// name is the same again; anything else is refused with the choices.
func TestParseCompression(t *testing.T) {
	for _, name := range Compressions() {
		c, err := ParseCompression(name)
		require.NoError(t, err, name)
		require.Equal(t, name, CompressionName(c))
	}
	c, err := ParseCompression("none")
	require.NoError(t, err)
	require.Zero(t, c)
	for _, bad := range []string{"brotli", "uncompressed", "2", ""} {
		_, err = ParseCompression(bad)
		require.ErrorContains(t, err, `want one of [none gzip snappy lz4 zstd]`, bad)
	}
}
