package ingest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestBatchReaderMatchesReadMessage reads the same fetches with kafka-go's
// Batch.ReadMessage and with batchReader, which calls kafka-go's internals
// (batchread.go): offsets, times and values must be the same, over record
// batches of every compression, with keys, headers and null values, from
// an offset inside a record batch and through fetches that end mid-log.
func TestBatchReaderMatchesReadMessage(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	ctx := t.Context()

	base := time.Date(2026, 8, 21, 10, 0, 0, 0, time.UTC)
	n := 0
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections() // Writer.Close leaves them open
	for _, codec := range []compress.Compression{0, compress.Snappy, compress.Lz4, compress.Gzip, compress.Zstd} {
		w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "t", Compression: codec, BatchSize: 1000, BatchTimeout: time.Millisecond,
			RequiredAcks: kafka.RequireOne, Transport: tr}
		var msgs []kafka.Message
		for i := range 50 {
			m := kafka.Message{Time: base.Add(time.Duration(n) * 1234567 * time.Microsecond),
				Value: []byte(fmt.Sprintf(`{"n":%d,"pad":%q}`, n, strings.Repeat("x", (n*37)%3000)))}
			switch i % 7 {
			case 1:
				m.Key = []byte(fmt.Sprintf("key-%d", n))
			case 2:
				m.Headers = []kafka.Header{{Key: "h", Value: []byte("v")}}
			case 3:
				m.Value = nil
			}
			msgs = append(msgs, m)
			n++
		}
		require.NoError(t, w.WriteMessages(ctx, msgs...), "compression %v", codec)
		require.NoError(t, w.Close())
	}

	type got struct {
		off  int64
		at   time.Time
		val  string
		null bool
	}
	read := func(from int64, maxBytes int, next func(*kafka.Batch, int64) (got, error)) []got {
		conn, err := (&kafka.Dialer{Timeout: 10 * time.Second}).DialLeader(ctx, "tcp", addr, "t", 0)
		require.NoError(t, err)
		defer func() { _ = conn.Close() }()
		_, err = conn.Seek(from, kafka.SeekAbsolute)
		require.NoError(t, err)
		var out []got
		for off := from; off < int64(n); {
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
			b := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: maxBytes, MaxWait: 100 * time.Millisecond})
			for {
				g, err := next(b, off)
				if err != nil {
					break
				}
				out = append(out, g)
				off = g.off + 1
			}
			if err := b.Close(); err != nil && !errors.Is(err, io.EOF) {
				require.NoError(t, err)
			}
		}
		return out
	}
	viaMessage := func(b *kafka.Batch, _ int64) (got, error) {
		m, err := b.ReadMessage()
		return got{m.Offset, m.Time, string(m.Value), m.Value == nil}, err
	}
	br := newBatchReader()
	viaReader := func(b *kafka.Batch, from int64) (got, error) {
		r, err := br.next(b, from)
		return got{r.Offset, r.Time, string(r.Value), r.Value == nil}, err
	}
	for _, from := range []int64{0, 17, 123} {
		for _, maxBytes := range []int{1 << 10, 16 << 20} {
			want := read(from, maxBytes, viaMessage)
			require.Len(t, want, n-int(from))
			require.Equal(t, want, read(from, maxBytes, viaReader), "from %d, max bytes %d", from, maxBytes)
		}
	}
}

// TestBatchReaderCut: a key or a value cut by the end of the response ends
// the batch with kafka-go's own sentinel, which its Batch treats as the cut,
// and never reads past the response.
func TestBatchReaderCut(t *testing.T) {
	require.EqualError(t, errShortRead, "not enough bytes available to load the response")
	br := newBatchReader()
	resp := func() *bufio.Reader { return bufio.NewReader(strings.NewReader("0123456789")) }

	rem, err := br.intoBuf(resp(), 10, 20)
	require.Same(t, errShortRead, err)
	require.Equal(t, 10, rem)
	rem, err = br.intoBuf(resp(), 10, 4)
	require.NoError(t, err)
	require.Equal(t, 6, rem)
	require.Equal(t, "0123", string(br.buf))

	r := resp()
	rem, err = br.skipKey(r, 6, 20) // 6 bytes of the response left, a 20-byte key
	require.Same(t, errShortRead, err)
	require.Equal(t, 0, rem)
	rest, _ := io.ReadAll(r)
	require.Equal(t, "6789", string(rest), "not a byte past the response")
	rem, err = br.skipKey(resp(), 10, 4)
	require.NoError(t, err)
	require.Equal(t, 6, rem)
}
