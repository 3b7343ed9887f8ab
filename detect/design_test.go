package detect

import "math"

// The test-only statistics of the sample-size table of docs/methods.md
// section 3: how many errors a test needs before it can fire. The tests
// check the table's numbers with them; the detector itself does not use
// them, so they live beside the tests.

// CriticalCount returns the smallest k such that BinomialUpperTail(k, n, p) ≤
// alpha (n+1 if none): used to say how many occurrences would make a signal
// significant ("insufficient evidence: need ≥ k").
func CriticalCount(n int64, p, alpha float64) int64 {
	if n < 0 {
		n = 0
	}
	// The tail decreases in k: binary search on [0, n+1], where the tail at
	// n+1 is 0 and so always qualifies.
	lo, hi := int64(0), n+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if BinomialUpperTail(mid, n, p) <= alpha {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// Design is one row of the design table of docs/methods.md section 3: the smallest
// total number of events (cohort + control) at which the exact conditional
// test at level Alpha reaches the requested power.
type Design struct {
	Total    int64   // total events needed
	Critical int64   // cohort events that make the test significant at Total
	CohortH1 float64 // expected cohort events under H1 at Total
	CohortH0 float64 // expected cohort events under H0 at Total
	Power    float64 // achieved power at Total (≥ the requested power)
}

// maxDesignCritical bounds the search of PowerDesign: alternatives so close to
// the null that more cohort events are needed are reported as unreachable.
const maxDesignCritical = 100_000

// PowerDesign returns the smallest total n for which the one-sided exact
// conditional test of H0: ratio ≤ rho0 at level alpha rejects with
// probability ≥ power when the true rate ratio is rho and the cohort's share
// of exposure is s. ok is false when the inputs make that impossible
// (rho ≤ rho0, s, alpha or power outside (0, 1), power ≤ alpha) or it would
// need more than 100,000 cohort events.
func PowerDesign(rho, rho0, s, alpha, power float64) (d Design, ok bool) {
	if !(s > 0 && s < 1) || !(alpha > 0 && alpha < 1) || !(power > alpha && power < 1) ||
		!(rho0 > 0) || !(rho > rho0) || math.IsInf(rho, 1) {
		return Design{}, false
	}
	p0 := rho0 * s / (rho0*s + 1 - s)
	q := rho * s / (rho*s + 1 - s)
	// Power is a sawtooth in n: it drops each time the critical count k
	// steps up. The critical count is non-decreasing in n and moves by at
	// most one per event, so n splits into runs [a_k, b_k] with constant
	// k, and within a run power P(X ≥ k | n, q) rises with n. The first run
	// whose last n reaches the target holds the smallest n; b_k is the
	// largest n with P(X ≥ k | n, p0) ≤ alpha (the null tail rises in n).
	start := int64(0) // a_k
	for k := int64(1); k <= maxDesignCritical; k++ {
		end := lastNWithTailAtMost(k, p0, alpha)
		if end < start {
			continue
		}
		if BinomialUpperTail(k, end, q) < power {
			start = end + 1
			continue
		}
		lo, hi := start, end
		for lo < hi {
			mid := lo + (hi-lo)/2
			if BinomialUpperTail(k, mid, q) >= power {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		return Design{
			Total:    lo,
			Critical: k,
			CohortH1: float64(lo) * q,
			CohortH0: float64(lo) * p0,
			Power:    BinomialUpperTail(k, lo, q),
		}, true
	}
	return Design{}, false
}

// lastNWithTailAtMost returns the largest n ≥ k−1 with P(X ≥ k | n, p) ≤
// alpha (k−1 qualifies trivially: the tail is 0 there).
func lastNWithTailAtMost(k int64, p, alpha float64) int64 {
	lo := k - 1 // qualifies
	step := max(k, 1)
	hi := lo + step
	for BinomialUpperTail(k, hi, p) <= alpha {
		lo = hi
		step *= 2
		hi = lo + step
	}
	// Invariant: lo qualifies, hi does not.
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if BinomialUpperTail(k, mid, p) <= alpha {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// PowerCount returns the expected number of cohort events needed for power
// `power` at rate ratio rho vs rho0 with share s at level alpha (the
// "cohort errors expected under H1" column of docs/methods.md section 3); +Inf
// when PowerDesign finds no design.
func PowerCount(rho, rho0, s, alpha, power float64) float64 {
	d, ok := PowerDesign(rho, rho0, s, alpha, power)
	if !ok {
		return math.Inf(1)
	}
	return d.CohortH1
}
