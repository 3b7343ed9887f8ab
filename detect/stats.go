package detect

// The statistics of docs/methods.md: exact conditional binomial tests of a Poisson
// rate ratio (section 1), the anytime-valid mixture likelihood ratio
// (section 2), the design numbers (section 3) and the guards for new
// fingerprints and multiplicity (section 4). Everything here is a pure
// function of its arguments; the per-bucket path allocates nothing.

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mathext"
)

// BinomialUpperTail returns P(X ≥ k) for X ~ Binomial(n, p), exact via the
// regularized incomplete beta I_p(k, n−k+1); 1 for k ≤ 0; 0 for k > n;
// handles p = 0 and 1; accurate for results down to ~1e-300 (relative error
// ~1e-11 up to n ≈ 10⁴, ~1e-8 at n = 10⁷, from lgamma's cancellation).
//
// Invalid arguments (n < 0, p outside [0, 1] or NaN) return 1: a p-value of 1
// never raises an alarm, which is the safe answer to a question that was
// asked wrongly.
func BinomialUpperTail(k, n int64, p float64) float64 {
	switch {
	case n < 0 || !(p >= 0 && p <= 1):
		return 1
	case k <= 0:
		return 1
	case k > n:
		return 0
	case p == 0:
		return 0
	case p == 1:
		return 1
	}
	// distuv.Binomial.Survival would give P(X > k) through 1 − CDF, off by
	// one and lost to cancellation below ~1e-16 (docs/methods.md section 7); the
	// incomplete beta gives the upper tail directly, in log space when small.
	return mathext.RegIncBeta(float64(k), float64(n-k+1), p)
}

// binomialNullShare is the probability that one of n conditioned events falls
// in the cohort under H0: rate ratio = rho0, given exposures rc and rk.
func binomialNullShare(rc, rk, rho0 float64) float64 {
	return rho0 * rc / (rho0*rc + rk)
}

// validExposures reports whether rc, rk and rho0 describe a testable
// comparison: positive finite exposures and a positive finite null ratio.
func validExposures(rc, rk, rho0 float64) bool {
	return rc > 0 && rk > 0 && rho0 > 0 &&
		!math.IsInf(rc, 1) && !math.IsInf(rk, 1) && !math.IsInf(rho0, 1)
}

// RateRatioPValue is the exact conditional (C-test) one-sided p-value of
// H0: rate ratio ≤ rho0 for a cohort with x events over exposure rc vs a
// control with y events over exposure rk: with n = x+y,
// p0 = rho0·rc/(rho0·rc + rk), p = P(X ≥ x | n, p0). midP selects the mid-p
// variant (P(X > x) + P(X = x)/2). Returns 1 when x == 0 or exposures are 0
// (and for any other untestable input: negative counts, rho0 ≤ 0, NaN).
func RateRatioPValue(x, y int64, rc, rk, rho0 float64, midP bool) float64 {
	if x <= 0 || y < 0 || !validExposures(rc, rk, rho0) {
		return 1
	}
	n := x + y
	p0 := binomialNullShare(rc, rk, rho0)
	upper := BinomialUpperTail(x, n, p0)
	if !midP {
		return upper
	}
	// P(X > x) + P(X = x)/2 = (P(X ≥ x) + P(X ≥ x+1))/2: two tails, no pmf
	// and no subtraction, so it stays accurate when both are tiny.
	return (upper + BinomialUpperTail(x+1, n, p0)) / 2
}

// RateRatioCI returns the exact (Clopper–Pearson on the conditional binomial)
// two-sided confidence interval [lo, hi] of the rate ratio (x/rc)/(y/rk) at
// level conf (e.g. 0.95); hi = +Inf when y == 0, lo = 0 when x == 0.
// Untestable inputs (exposures ≤ 0, negative counts, conf outside (0, 1))
// return the uninformative [0, +Inf].
func RateRatioCI(x, y int64, rc, rk, conf float64) (lo, hi float64) {
	lo, hi = 0, math.Inf(1)
	if x < 0 || y < 0 || !validExposures(rc, rk, 1) || !(conf > 0 && conf < 1) {
		return lo, hi
	}
	n := float64(x + y)
	tail := (1 - conf) / 2
	scale := rk / rc
	xf, yf := float64(x), float64(y)
	if x > 0 {
		// Lower limit of the cohort share p: P(X ≥ x | p) = tail, i.e. the
		// tail quantile of Beta(x, n−x+1). The odds p/(1−p) estimate the
		// event ratio x/y; the complement is inverted separately when p is
		// near 1 so that 1−p keeps its digits.
		pLo := mathext.InvRegIncBeta(xf, n-xf+1, tail)
		if pLo <= 0.5 {
			lo = pLo / (1 - pLo) * scale
		} else {
			qLo := mathext.InvRegIncBeta(n-xf+1, xf, 1-tail)
			lo = (1 - qLo) / qLo * scale
		}
	}
	if y > 0 {
		// Upper limit: P(X ≤ x | p) = tail, i.e. the 1−tail quantile of
		// Beta(x+1, n−x); its complement 1−p is the tail quantile of
		// Beta(n−x, x+1).
		qHi := mathext.InvRegIncBeta(yf, xf+1, tail)
		if qHi >= 0.5 {
			pHi := mathext.InvRegIncBeta(xf+1, yf, 1-tail)
			hi = pHi / (1 - pHi) * scale
		} else {
			hi = (1 - qHi) / qHi * scale
		}
	}
	return lo, hi
}

// MaxAlternatives is the largest grid an EProcess holds: its state is fixed
// arrays so that copying it is cheap and updating it never allocates.
const MaxAlternatives = 8

// DefaultEProcessRhos is the grid of alternative rate ratios of docs/methods.md
// section 2, used with equal weights when NewEProcess gets no grid.
func DefaultEProcessRhos() []float64 { return []float64{2, 3, 5, 10} }

// ErrInvalidGrid is returned by CheckEProcessGrid.
var ErrInvalidGrid = errors.New("invalid e-process grid")

// CheckEProcessGrid reports whether NewEProcess accepts rhos and weights:
// at most MaxAlternatives alternatives, each a finite multiple > 1 of the null
// (alternatives ≤ 1 would break validity under a composite null), weights
// either nil or one finite non-negative weight per alternative with a
// positive sum. Configuration code calls it so that NewEProcess never sees an
// invalid grid.
func CheckEProcessGrid(rhos, weights []float64) error {
	if len(rhos) == 0 {
		if len(weights) != 0 {
			return fmt.Errorf("%w: %d weights without alternatives", ErrInvalidGrid, len(weights))
		}
		return nil
	}
	if len(rhos) > MaxAlternatives {
		return fmt.Errorf("%w: %d alternatives, at most %d", ErrInvalidGrid, len(rhos), MaxAlternatives)
	}
	for _, r := range rhos {
		if !(r > 1) || math.IsInf(r, 1) {
			return fmt.Errorf("%w: alternative rate ratio %v is not a finite number > 1", ErrInvalidGrid, r)
		}
	}
	if weights == nil {
		return nil
	}
	if len(weights) != len(rhos) {
		return fmt.Errorf("%w: %d weights for %d alternatives", ErrInvalidGrid, len(weights), len(rhos))
	}
	sum := 0.0
	for _, w := range weights {
		if !(w >= 0) || math.IsInf(w, 1) {
			return fmt.Errorf("%w: weight %v is not a finite number ≥ 0", ErrInvalidGrid, w)
		}
		sum += w
	}
	if !(sum > 0) || math.IsInf(sum, 1) {
		return fmt.Errorf("%w: weights sum to %v", ErrInvalidGrid, sum)
	}
	return nil
}

// EProcess is the mixture likelihood-ratio test of docs/methods.md section 2
// (Lindon et al.): log-LR sums for a grid of alternatives rho_j with weights
// w_j. Anytime-valid: P(ever E ≥ 1/α | H0) ≤ α (Ville).
//
// The zero value uses the default grid. State is fixed-size arrays, no
// slices: copying it is cheap and it never allocates.
type EProcess struct {
	logRho  [MaxAlternatives]float64 // log ρ_j
	rho     [MaxAlternatives]float64 // ρ_j, multiples of the null ratio
	logW    [MaxAlternatives]float64 // log w_j, Σ w_j = 1
	logLR   [MaxAlternatives]float64 // L_j
	k       int                      // alternatives in use
	buckets int64
	x, y    int64
}

// NewEProcess returns an e-process over the alternatives rhos with weights
// (normalised to sum 1; equal when nil). With no rhos it uses the default
// grid {2, 3, 5, 10} with equal weights. At most MaxAlternatives alternatives.
// It panics on a grid CheckEProcessGrid rejects: grids come from code or from
// validated configuration, so an invalid one is a programming error.
func NewEProcess(rhos, weights []float64) EProcess {
	if err := CheckEProcessGrid(rhos, weights); err != nil {
		panic(fmt.Sprintf("detect.NewEProcess: %v", err))
	}
	var e EProcess
	if len(rhos) == 0 {
		e.setDefaultGrid()
		return e
	}
	sum := 0.0
	for i := range rhos {
		if weights != nil {
			sum += weights[i]
		} else {
			sum++
		}
	}
	for i, r := range rhos {
		w := 1.0
		if weights != nil {
			w = weights[i]
		}
		e.rho[e.k] = r
		e.logRho[e.k] = math.Log(r)
		// A zero weight is a valid choice (the alternative is switched off);
		// log 0 = −Inf drops it from the log-sum-exp.
		e.logW[e.k] = math.Log(w / sum)
		e.k++
	}
	return e
}

func (e *EProcess) setDefaultGrid() {
	// Literal values instead of DefaultEProcessRhos: this runs lazily on the
	// per-bucket path of a zero value and must not allocate.
	rhos := [...]float64{2, 3, 5, 10}
	for i, r := range rhos {
		e.rho[i] = r
		e.logRho[i] = math.Log(r)
		e.logW[i] = -math.Log(float64(len(rhos)))
	}
	e.k = len(rhos)
}

// Update adds one bucket: x cohort events, y control events, s = the cohort's
// share of exposure (requests) in that bucket (0<s<1; buckets with s outside
// (0,1) or x+y == 0 are ignored), rho0 the null rate ratio (≥ 1, the margin /
// DiD baseline). Increment for each j: x·log(q_j/p0) + y·log((1−q_j)/(1−p0)),
// q_j = rho0·rho_j·s/(rho0·rho_j·s + 1 − s), p0 = rho0·s/(rho0·s + 1 − s)
// (alternatives are multiples of the null so the test stays valid when
// rho0 > 1). Buckets with negative counts or a rho0 that is not a finite
// positive number are ignored too: they carry no usable evidence.
func (e *EProcess) Update(x, y int64, s, rho0 float64) {
	if x < 0 || y < 0 || x+y == 0 || !(s > 0 && s < 1) || !(rho0 > 0) || math.IsInf(rho0, 1) {
		return
	}
	if e.k == 0 {
		e.setDefaultGrid()
	}
	// With D(r) = r·s + 1 − s: q_j/p0 = ρ_j·D(ρ0)/D(ρ0·ρ_j) and
	// (1−q_j)/(1−p0) = D(ρ0)/D(ρ0·ρ_j), so the increment is
	// x·log ρ_j + (x+y)·(log D(ρ0) − log D(ρ0·ρ_j)): one log per alternative,
	// and log1p keeps the digits when s is tiny.
	n := float64(x + y)
	xf := float64(x)
	logD0 := math.Log1p(s * (rho0 - 1))
	for j := range e.k {
		e.logLR[j] += xf*e.logRho[j] + n*(logD0-math.Log1p(s*(rho0*e.rho[j]-1)))
	}
	e.buckets++
	e.x += x
	e.y += y
}

// LogE returns log E = log Σ w_j exp(L_j), by log-sum-exp so that it neither
// overflows nor underflows.
func (e *EProcess) LogE() float64 {
	if e.k == 0 {
		return 0 // no evidence yet: E = Σ w_j = 1
	}
	m := math.Inf(-1)
	for j := range e.k {
		m = max(m, e.logW[j]+e.logLR[j])
	}
	if math.IsInf(m, 0) {
		return m
	}
	sum := 0.0
	for j := range e.k {
		sum += math.Exp(e.logW[j] + e.logLR[j] - m)
	}
	return m + math.Log(sum)
}

// E returns the e-value Σ w_j exp(L_j); +Inf when it exceeds the float range.
func (e *EProcess) E() float64 { return math.Exp(e.LogE()) }

// Reset forgets the evidence (after an alarm, at a deploy boundary) and keeps
// the grid.
func (e *EProcess) Reset() {
	e.logLR = [MaxAlternatives]float64{}
	e.buckets, e.x, e.y = 0, 0, 0
}

// Buckets returns the number of buckets with events since the last reset.
func (e *EProcess) Buckets() int { return int(e.buckets) }

// Events returns the cohort and control events counted since the last reset.
func (e *EProcess) Events() (cohort, control int64) { return e.x, e.y }

// OnsetPValue is the p-value of an onset: a signature absent for `pre` of
// exposure (e.g. time or requests) before a change and seen n times in `post`
// after. Under a constant rate, P(all n after) = (post/(pre+post))^n. Without a pre-period
// (pre ≤ 0) or a post-period (post ≤ 0) there is no evidence of an onset and
// the p-value is 1.
func OnsetPValue(n int64, pre, post float64) float64 {
	if n <= 0 || !(pre > 0) || !(post > 0) || math.IsInf(post, 1) {
		return 1
	}
	if math.IsInf(pre, 1) {
		return 0
	}
	// (post/(pre+post))^n = exp(−n·log(1 + pre/post)).
	return math.Exp(-float64(n) * math.Log1p(pre/post))
}

// Bonferroni returns alpha/k (k ≥ 1; smaller k count as 1).
func Bonferroni(alpha float64, k int) float64 {
	return alpha / float64(max(k, 1))
}
