package ingest

// The per-record path after kafka-go hands over the bytes: copy into the
// reader's buffer, count, decode, hand to the sink. Run:
//
//	go test -run '^$' -bench RecordPath -benchmem ./ingest
//
// value=reused is the path as it runs (batchReader's one buffer: 0
// allocations per record); value=allocated is the same with a new value per
// record, as Batch.ReadMessage did before: the baseline of the same run.

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

type nopSink struct{ n int }

func (s *nopSink) Add(*event.Event, *event.Detail) { s.n++ }
func (s *nopSink) Flush()                          {}

func BenchmarkRecordPath(b *testing.B) {
	recs := readLines(b, "accesslog.jsonl")
	wikis, err := wikimap.Default()
	if err != nil {
		b.Fatal(err)
	}
	at := time.Date(2026, 8, 21, 10, 15, 42, 0, time.UTC)
	for _, alloc := range []bool{false, true} {
		name := "value=reused"
		if alloc {
			name = "value=allocated"
		}
		b.Run(name, func(b *testing.B) {
			dec, err := decode.New(decode.FormatAccessLog, wikis, event.NewInterner(), event.NewInterner(), decode.Options{})
			if err != nil {
				b.Fatal(err)
			}
			sink := &nopSink{}
			h := newRecordHandler(dec, sink, NewMetrics(prometheus.NewRegistry()).forTopic("t"), slog.New(slog.DiscardHandler))
			buf := make([]byte, 0, initialBatchBuffer)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				v := recs[i%len(recs)]
				i++
				if alloc {
					buf = make([]byte, len(v))
				}
				buf = append(buf[:0], v...)
				rec := record{Offset: int64(i), Time: at, Value: buf}
				h.handle(&rec)
				if i%1000 == 0 {
					h.publish() // once per fetch
				}
			}
			if sink.n == 0 {
				b.Fatal("no record decoded")
			}
		})
	}
}
