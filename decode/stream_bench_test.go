package decode_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// BenchmarkDecodeStream decodes a stream of simulated access-log records,
// as one partition sees them: many pods, wikis and sizes interleaved, where
// BenchmarkDecode repeats one record (and so always hits the decoder's
// caches and trains the branch predictor on one shape). 512 records (about
// 800 KB) cycle, so they stay in the CPU cache as a record kafka-go has
// just copied would be: it is the decoder's share of the ingest benchmark
// without Kafka.
func BenchmarkDecodeStream(b *testing.B) {
	wikis, err := wikimap.Default()
	if err != nil {
		b.Fatal(err)
	}
	const want = 512
	var recs [][]byte
	var size int64
	errEnough := errors.New("enough")
	cfg := simulate.Config{Scenario: "quiet", Seed: 1, Duration: time.Hour, Rate: 2000}
	_, err = simulate.Run(context.Background(), cfg, wikis, func(_ context.Context, batch []simulate.Record) error {
		for _, r := range batch {
			if r.Topic == simulate.DefaultAccessLog && len(recs) < want {
				recs = append(recs, bytes.Clone(r.Value))
				size += int64(len(r.Value))
			}
		}
		if len(recs) >= want {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		b.Fatal(err)
	}
	d, err := decode.New(decode.FormatAccessLog, wikis, event.NewInterner(), event.NewInterner(), decode.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var ev event.Event
	var det event.Detail
	for _, r := range recs { // every record is good: a rejected one would time the error path
		if err := d.Decode(r, time.Time{}, &ev, &det); err != nil {
			b.Fatalf("simulated record rejected: %v", err)
		}
	}
	b.ReportAllocs()
	b.SetBytes(size / int64(len(recs)))
	i := 0
	for b.Loop() {
		_ = d.Decode(recs[i], time.Time{}, &ev, &det)
		if i++; i == len(recs) {
			i = 0
		}
	}
}
