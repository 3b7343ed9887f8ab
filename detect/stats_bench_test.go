package detect

// Run: go test ./detect -run '^$' -bench 'Binomial|RateRatio|EProcess|BH|Critical|Power|Signature' -benchmem

import (
	"fmt"
	"testing"
)

// sink keeps results alive so the compiler cannot drop the calls.
type sink struct{ f float64 }

func BenchmarkBinomialUpperTail(b *testing.B) {
	for _, tc := range []struct {
		k, n int64
		p    float64
	}{
		{7, 37, 0.01},     // docs/methods.md example, pseries/continued fraction
		{38, 2173, 0.01},  // design-table scale
		{180, 9180, 0.02}, // large counts, log-space path
		{100, 100, 0.01},  // k = n, result 1e-200
		{300, 1000, 0.5},  // upper half: the symmetric branch
		{1, 5, 1e-300},    // extreme p
	} {
		b.Run(fmt.Sprintf("k=%d/n=%d/p=%g", tc.k, tc.n, tc.p), func(b *testing.B) {
			b.ReportAllocs()
			var s sink
			for b.Loop() {
				s.f += BinomialUpperTail(tc.k, tc.n, tc.p)
			}
			_ = s.f
		})
	}
}

func BenchmarkRateRatioPValue(b *testing.B) {
	for _, midP := range []bool{false, true} {
		b.Run(fmt.Sprintf("midp=%v", midP), func(b *testing.B) {
			b.ReportAllocs()
			var s sink
			for b.Loop() {
				s.f += RateRatioPValue(7, 30, 1e4, 99e4, 1.5, midP)
			}
			_ = s.f
		})
	}
}

func BenchmarkRateRatioCI(b *testing.B) {
	b.ReportAllocs()
	var s sink
	for b.Loop() {
		lo, hi := RateRatioCI(7, 30, 1e4, 99e4, 0.95)
		s.f += lo + hi
	}
	_ = s.f
}

func BenchmarkEProcessUpdate(b *testing.B) {
	for _, k := range []int{1, 4, MaxAlternatives} {
		rhos := []float64{2, 3, 5, 10, 1.5, 20, 50, 100}[:k]
		b.Run(fmt.Sprintf("alternatives=%d", k), func(b *testing.B) {
			b.ReportAllocs()
			e := NewEProcess(rhos, nil)
			for b.Loop() {
				e.Update(1, 40, 0.01, 1.5)
			}
			if e.Buckets() == 0 {
				b.Fatal("no buckets counted")
			}
		})
	}
}

func BenchmarkEProcessUpdateAndCheck(b *testing.B) {
	// The per-bucket path of the engine: update, then compare with 1/α.
	b.ReportAllocs()
	e := NewEProcess(nil, nil)
	alarms := 0
	for b.Loop() {
		e.Update(1, 40, 0.01, 1)
		if e.LogE() >= 6.907755278982137 { // log 1000
			alarms++
			e.Reset()
		}
	}
	_ = alarms
}
