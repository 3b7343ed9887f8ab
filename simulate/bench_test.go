package simulate

// Generation speed, the records/s that `detector demo` and the pipeline
// benchmarks can push:
//
//	go test ./simulate -run '^$' -bench . -benchmem -count=6

import (
	"context"
	"testing"
	"time"
)

func BenchmarkRun(b *testing.B) {
	m := testMap(b)
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"scenario=quiet", Config{Scenario: "quiet", Duration: 2 * time.Minute}},
		{"scenario=demo", Config{Scenario: "demo", Start: time.Date(2026, 11, 24, 11, 20, 0, 0, time.UTC), Duration: 2 * time.Minute}},
		{"scenario=quiet/batch=100", Config{Scenario: "quiet", Duration: 2 * time.Minute, BatchSize: 100}},
		{"scenario=quiet/duration=8m", Config{Scenario: "quiet", Duration: 8 * time.Minute}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var records, bytes, errs int64
			sink := func(_ context.Context, batch []Record) error {
				for _, r := range batch {
					records++
					bytes += int64(len(r.Value) + len(r.Key))
					if r.Topic != DefaultAccessLog {
						errs++
					}
				}
				return nil
			}
			b.ReportAllocs()
			runs := 0
			for b.Loop() {
				if _, err := Run(context.Background(), bc.cfg, m, sink); err != nil {
					b.Fatal(err)
				}
				runs++
			}
			b.SetBytes(bytes / int64(runs))
			b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(records)/float64(runs), "records/op")
			b.ReportMetric(float64(errs)/float64(runs), "errors/op")
		})
	}
}
