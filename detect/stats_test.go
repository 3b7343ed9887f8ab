package detect

import (
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/stat/distuv"
)

// refPrec is the precision of the math/big reference computations: far more
// than float64 needs, so the reference is exact for our purposes.
const refPrec = 512

func bigFloat(v float64) *big.Float { return new(big.Float).SetPrec(refPrec).SetFloat64(v) }

func bigPow(x *big.Float, e int64) *big.Float {
	r := new(big.Float).SetPrec(refPrec).SetInt64(1)
	b := new(big.Float).SetPrec(refPrec).Set(x)
	for ; e > 0; e >>= 1 {
		if e&1 == 1 {
			r.Mul(r, b)
		}
		b.Mul(b, b)
	}
	return r
}

// exactPMF returns C(n, i)·p^i·(1−p)^(n−i) at refPrec, from the exact binary
// value of p.
func exactPMF(i, n int64, p float64) *big.Float {
	bp := bigFloat(p)
	bq := new(big.Float).SetPrec(refPrec).Sub(bigFloat(1), bp)
	t := new(big.Float).SetPrec(refPrec).SetInt(new(big.Int).Binomial(n, i))
	t.Mul(t, bigPow(bp, i))
	return t.Mul(t, bigPow(bq, n-i))
}

// exactUpperTail is P(X ≥ k), X ~ Bin(n, p), as a sum of pmf terms in
// math/big: independent of the incomplete beta and free of cancellation. The
// terms follow t_{i+1} = t_i·(n−i)/(i+1)·p/(1−p); once they decrease and fall
// below 2⁻²⁰⁰ of the sum the rest cannot change a float64.
func exactUpperTail(k, n int64, p float64) float64 {
	if k <= 0 {
		return 1
	}
	if k > n {
		return 0
	}
	bp := bigFloat(p)
	odds := new(big.Float).SetPrec(refPrec).Quo(bp, new(big.Float).SetPrec(refPrec).Sub(bigFloat(1), bp))
	t := exactPMF(k, n, p)
	sum := new(big.Float).SetPrec(refPrec).Set(t)
	next := new(big.Float).SetPrec(refPrec)
	for i := k; i < n; i++ {
		next.Mul(t, odds)
		next.Mul(next, new(big.Float).SetPrec(refPrec).SetInt64(n-i))
		next.Quo(next, new(big.Float).SetPrec(refPrec).SetInt64(i+1))
		decreasing := next.Cmp(t) < 0
		t.Set(next)
		sum.Add(sum, t)
		if decreasing && t.Sign() > 0 && sum.MantExp(nil)-t.MantExp(nil) > 200 {
			break
		}
	}
	f, _ := sum.Float64()
	return f
}

// requireRel checks got against want to a relative tolerance.
func requireRel(t *testing.T, want, got, rel float64, msgAndArgs ...any) {
	t.Helper()
	if want == 0 {
		require.Zero(t, got, msgAndArgs...)
		return
	}
	require.InEpsilon(t, want, got, rel, msgAndArgs...)
}

func TestBinomialUpperTailEdges(t *testing.T) {
	for _, tc := range []struct {
		name string
		k, n int64
		p    float64
		want float64
	}{
		{"k=0 is certain", 0, 10, 0.3, 1},
		{"negative k is certain", -3, 10, 0.3, 1},
		{"k>n is impossible", 11, 10, 0.3, 0},
		{"n=0 k=1", 1, 0, 0.3, 0},
		{"n=0 k=0", 0, 0, 0.3, 1},
		{"p=0", 1, 10, 0, 0},
		{"p=1", 10, 10, 1, 1},
		{"p=1 k=1", 1, 10, 1, 1},
		{"negative p is invalid", 1, 10, -0.1, 1},
		{"p>1 is invalid", 1, 10, 1.1, 1},
		{"NaN p is invalid", 1, 10, math.NaN(), 1},
		{"negative n is invalid", 1, -1, 0.5, 1},
		{"k=n=1 is p", 1, 1, 0.25, 0.25},
		{"k=1 n=2 is 1-(1-p)^2", 1, 2, 0.5, 0.75},
		{"k=n=2 is p^2", 2, 2, 0.5, 0.25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, BinomialUpperTail(tc.k, tc.n, tc.p))
		})
	}
}

func TestBinomialUpperTailExact(t *testing.T) {
	// A grid over small and large n, tiny to near-one p, and k from the first
	// event to all of them, against math/big sums of the pmf.
	type tc struct {
		k, n int64
		p    float64
	}
	var cases []tc
	for _, n := range []int64{1, 2, 5, 37, 100, 170, 171, 400} {
		for _, p := range []float64{1e-300, 1e-100, 1e-10, 1e-3, 0.01, 0.1, 0.5, 0.9, 0.999999} {
			for _, k := range []int64{1, 2, 3, 7, n / 3, n / 2, n - 1, n} {
				if k >= 1 && k <= n {
					cases = append(cases, tc{k, n, p})
				}
			}
		}
	}
	for _, c := range cases {
		want := exactUpperTail(c.k, c.n, c.p)
		if want < 1e-300 {
			// Below the range we promise: only require that it stays tiny.
			require.Less(t, BinomialUpperTail(c.k, c.n, c.p), 1e-290, "k=%d n=%d p=%g", c.k, c.n, c.p)
			continue
		}
		requireRel(t, want, BinomialUpperTail(c.k, c.n, c.p), 1e-10, "k=%d n=%d p=%g", c.k, c.n, c.p)
	}
}

func TestBinomialUpperTailLargeN(t *testing.T) {
	// At millions of events lgamma's cancellation costs digits: ~1e-9
	// relative at n = 10⁶, ~1e-8 at 10⁷. Plenty for a p-value.
	for _, tc := range []struct {
		k, n int64
		p    float64
	}{
		{10300, 1_000_000, 0.01}, // 3σ
		{11000, 1_000_000, 0.01}, // 10σ
		{9900, 1_000_000, 0.01},  // below the mean: the symmetric branch
		{200, 10_000_000, 1e-5},
	} {
		requireRel(t, exactUpperTail(tc.k, tc.n, tc.p), BinomialUpperTail(tc.k, tc.n, tc.p), 1e-7, "%+v", tc)
	}
}

func TestBinomialUpperTailExtremes(t *testing.T) {
	for _, tc := range []struct {
		name string
		k, n int64
		p    float64
		want float64
	}{
		// Closed form p^n for k = n.
		{"k=n=100 p=0.01 is 1e-200", 100, 100, 0.01, math.Pow(0.01, 100)},
		{"k=n=150 p=0.01 is 1e-300", 150, 150, 0.01, 1e-300},
		{"k=n=100 p=1e-3 is 1e-300", 100, 100, 1e-3, 1e-300},
		{"k=n=20 p=1e-10 is 1e-200", 20, 20, 1e-10, 1e-200},
		// k = 1 is 1 − (1−p)^n ≈ n·p for tiny p, which 1 − CDF cannot resolve.
		{"k=1 n=5 p=1e-300", 1, 5, 1e-300, 5e-300},
		{"k=1 n=1000 p=1e-20", 1, 1000, 1e-20, -math.Expm1(1000 * math.Log1p(-1e-20))},
		// C(n,k)·p^k dominates the tail for tiny p: C(1000,30)·1e-300 ≈ 2.4e-243.
		{"k=30 n=1000 p=1e-10", 30, 1000, 1e-10, exactUpperTail(30, 1000, 1e-10)},
		{"k=2 n=10 p=1e-150", 2, 10, 1e-150, exactUpperTail(2, 10, 1e-150)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRel(t, tc.want, BinomialUpperTail(tc.k, tc.n, tc.p), 1e-10)
		})
	}
}

func TestBinomialUpperTailOffByOne(t *testing.T) {
	// P(X ≥ k) − P(X ≥ k+1) must be exactly P(X = k); with the off-by-one of
	// distuv.Binomial.Survival (P(X > k)) it would be P(X = k+1).
	for _, tc := range []struct {
		k, n int64
		p    float64
	}{
		{0, 10, 0.3}, {1, 10, 0.3}, {7, 37, 0.01}, {5, 73, 0.01}, {20, 40, 0.5}, {40, 40, 0.5},
	} {
		t.Run("", func(t *testing.T) {
			diff := BinomialUpperTail(tc.k, tc.n, tc.p) - BinomialUpperTail(tc.k+1, tc.n, tc.p)
			pmf, _ := exactPMF(tc.k, tc.n, tc.p).Float64()
			requireRel(t, pmf, diff, 1e-9)
			// In the range where 1 − CDF is accurate, P(X ≥ k) = Survival(k−1).
			surv := distuv.Binomial{N: float64(tc.n), P: tc.p}.Survival(float64(tc.k - 1))
			require.InDelta(t, surv, BinomialUpperTail(tc.k, tc.n, tc.p), 1e-12)
		})
	}
}

func TestBinomialUpperTailMonotone(t *testing.T) {
	for _, n := range []int64{1, 10, 37, 500} {
		for _, p := range []float64{1e-6, 0.01, 0.3, 0.9} {
			prev := 2.0
			for k := int64(0); k <= n+1; k++ {
				v := BinomialUpperTail(k, n, p)
				require.LessOrEqual(t, v, prev, "decreasing in k: k=%d n=%d p=%g", k, n, p)
				require.GreaterOrEqual(t, v, 0.0)
				prev = v
			}
		}
	}
	// Increasing in n (more chances) and in p.
	for _, k := range []int64{1, 5, 30} {
		prev := -1.0
		for n := k; n < k+300; n++ {
			v := BinomialUpperTail(k, n, 0.02)
			require.GreaterOrEqual(t, v, prev, "increasing in n: k=%d n=%d", k, n)
			prev = v
		}
		prev = -1.0
		for p := 0.0; p <= 1; p += 1.0 / 256 {
			v := BinomialUpperTail(k, 60, p)
			require.GreaterOrEqual(t, v, prev, "increasing in p: k=%d p=%g", k, p)
			prev = v
		}
	}
}

func TestBinomialMethodsExample(t *testing.T) {
	// docs/methods.md section 3: "7 of 37 errors in the cohort at s = 1% gives
	// p = 7.9·10⁻⁸".
	p := BinomialUpperTail(7, 37, 0.01)
	require.InDelta(t, 7.9e-8, p, 0.05e-8)
	// The same through the rate-ratio test: 1 request in 100 is the cohort's.
	require.InDelta(t, p, RateRatioPValue(7, 30, 1, 99, 1, false), 1e-20)
	require.InDelta(t, p, RateRatioPValue(7, 30, 10_000, 990_000, 1, false), 1e-20)
}

func TestRateRatioPValue(t *testing.T) {
	for _, tc := range []struct {
		name         string
		x, y         int64
		rc, rk, rho0 float64
		midP         bool
		want         float64
	}{
		{"no cohort events", 0, 50, 1, 99, 1, false, 1},
		{"no cohort events mid-p", 0, 50, 1, 99, 1, true, 1},
		{"no cohort exposure", 3, 50, 0, 99, 1, false, 1},
		{"no control exposure", 3, 50, 1, 0, 1, false, 1},
		{"negative control count", 3, -1, 1, 99, 1, false, 1},
		{"NaN exposure", 3, 5, math.NaN(), 99, 1, false, 1},
		{"zero null ratio", 3, 5, 1, 99, 0, false, 1},
		{"all events in cohort", 3, 0, 1, 1, 1, false, 0.125},
		// p0 = 1.5·1/(1.5·1 + 99) = 3/201.
		{"margin 1.5", 7, 30, 1, 99, 1.5, false, exactUpperTail(7, 37, 1.5/(1.5+99))},
		{"equal exposures", 12, 3, 500, 500, 1, false, exactUpperTail(12, 15, 0.5)},
		{"large counts", 180, 9000, 2, 98, 1, false, exactUpperTail(180, 9180, 2.0/100)},
		// Mid-p: P(X > x) + P(X = x)/2, from the exact pmf.
		{"mid-p", 7, 30, 1, 99, 1, true, exactUpperTail(8, 37, 0.01) + pmfF(7, 37, 0.01)/2},
		{"mid-p all in cohort", 3, 0, 1, 1, 1, true, 0.0625},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRel(t, tc.want, RateRatioPValue(tc.x, tc.y, tc.rc, tc.rk, tc.rho0, tc.midP), 1e-10)
		})
	}
}

func pmfF(i, n int64, p float64) float64 {
	f, _ := exactPMF(i, n, p).Float64()
	return f
}

func TestRateRatioPValueProperties(t *testing.T) {
	// Scale-free in exposure, growing in the margin, mid-p below exact.
	for _, x := range []int64{1, 3, 7, 20} {
		for _, y := range []int64{0, 5, 30, 400} {
			exact := RateRatioPValue(x, y, 1, 99, 1, false)
			requireRel(t, exact, RateRatioPValue(x, y, 1e3, 99e3, 1, false), 1e-12)
			require.LessOrEqual(t, RateRatioPValue(x, y, 1, 99, 1, true), exact)
			prev := 0.0
			for _, rho0 := range []float64{0.5, 1, 1.5, 2, 5} {
				v := RateRatioPValue(x, y, 1, 99, rho0, false)
				require.GreaterOrEqual(t, v, prev, "x=%d y=%d rho0=%g", x, y, rho0)
				prev = v
			}
			// More cohort events at the same total are more surprising.
			if y > 0 {
				require.Less(t, RateRatioPValue(x+1, y-1, 1, 99, 1, false), exact)
			}
		}
	}
}

// exactShareAt finds by bisection the p at which the exact tail function
// equals target; f must be monotone increasing in p.
func exactShareAt(f func(p float64) float64, target float64) float64 {
	lo, hi := 0.0, 1.0
	for range 80 {
		mid := (lo + hi) / 2
		if f(mid) < target {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

func TestRateRatioCI(t *testing.T) {
	for _, tc := range []struct {
		name   string
		x, y   int64
		rc, rk float64
		conf   float64
	}{
		{"methods example", 7, 30, 1, 99, 0.95},
		{"small", 2, 3, 10, 20, 0.95},
		{"even", 20, 20, 1, 1, 0.9},
		{"cohort heavy", 45, 2, 1, 3, 0.99},
		{"control heavy", 1, 300, 5, 95, 0.95},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi := RateRatioCI(tc.x, tc.y, tc.rc, tc.rk, tc.conf)
			n := tc.x + tc.y
			tail := (1 - tc.conf) / 2
			// Clopper–Pearson limits of the share, by bisection on math/big
			// tails: P(X ≥ x | pLo) = tail, P(X ≤ x | pHi) = tail.
			pLo := exactShareAt(func(p float64) float64 { return exactUpperTail(tc.x, n, p) }, tail)
			pHi := exactShareAt(func(p float64) float64 { return exactUpperTail(tc.x+1, n, p) }, 1-tail)
			scale := tc.rk / tc.rc
			requireRel(t, pLo/(1-pLo)*scale, lo, 1e-6)
			requireRel(t, pHi/(1-pHi)*scale, hi, 1e-6)
			est := float64(tc.x) / tc.rc / (float64(tc.y) / tc.rk)
			require.Less(t, lo, est)
			require.Greater(t, hi, est)
			// Duality with the test: the lower limit is the null ratio at
			// which the one-sided p-value is exactly the tail.
			requireRel(t, tail, RateRatioPValue(tc.x, tc.y, tc.rc, tc.rk, lo, false), 1e-6)
			// A higher level gives a wider interval.
			lo2, hi2 := RateRatioCI(tc.x, tc.y, tc.rc, tc.rk, (1+tc.conf)/2)
			require.Less(t, lo2, lo)
			require.Greater(t, hi2, hi)
		})
	}
}

func TestRateRatioCIEdges(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name           string
		x, y           int64
		rc, rk, conf   float64
		wantLo, wantHi float64
	}{
		// x = 0: lo = 0; hi solves P(X = 0 | p) = (1−p)^y = tail.
		{"no cohort events", 0, 10, 1, 1, 0.95, 0, (1 - math.Pow(0.025, 0.1)) / math.Pow(0.025, 0.1)},
		// y = 0: hi = +Inf; lo solves p^x = tail.
		{"no control events", 4, 0, 1, 1, 0.95, math.Pow(0.025, 0.25) / (1 - math.Pow(0.025, 0.25)), inf},
		{"no events", 0, 0, 1, 1, 0.95, 0, inf},
		{"no cohort exposure", 3, 3, 0, 1, 0.95, 0, inf},
		{"conf 1", 3, 3, 1, 1, 1, 0, inf},
		{"conf 0", 3, 3, 1, 1, 0, 0, inf},
		{"negative count", -1, 3, 1, 1, 0.95, 0, inf},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi := RateRatioCI(tc.x, tc.y, tc.rc, tc.rk, tc.conf)
			if tc.wantLo == 0 {
				require.Zero(t, lo)
			} else {
				requireRel(t, tc.wantLo, lo, 1e-8)
			}
			if math.IsInf(tc.wantHi, 1) {
				require.True(t, math.IsInf(hi, 1), "hi = %v", hi)
			} else {
				requireRel(t, tc.wantHi, hi, 1e-8)
			}
		})
	}
}

// directIncrement is the increment of docs/methods.md section 2 written as the
// brief states it, for comparison with the rearranged form in Update.
func directIncrement(x, y int64, s, rho0, rho float64) float64 {
	p0 := rho0 * s / (rho0*s + 1 - s)
	q := rho0 * rho * s / (rho0*rho*s + 1 - s)
	return float64(x)*math.Log(q/p0) + float64(y)*math.Log((1-q)/(1-p0))
}

func TestEProcessIncrement(t *testing.T) {
	buckets := []struct {
		x, y    int64
		s, rho0 float64
	}{
		{1, 0, 0.01, 1}, {0, 5, 0.01, 1}, {3, 40, 0.02, 1.5}, {0, 200, 0.3, 2}, {7, 30, 0.01, 1}, {2, 2, 0.5, 1},
	}
	for _, rho := range []float64{1.5, 2, 5, 10} {
		e := NewEProcess([]float64{rho}, nil)
		want := 0.0
		for _, b := range buckets {
			e.Update(b.x, b.y, b.s, b.rho0)
			want += directIncrement(b.x, b.y, b.s, b.rho0, rho)
			require.InDelta(t, want, e.LogE(), 1e-9*max(1, math.Abs(want)), "rho=%g", rho)
		}
		require.Equal(t, len(buckets), e.Buckets())
	}
}

func TestEProcessMartingale(t *testing.T) {
	// For a single alternative, E is a likelihood ratio: its expectation over
	// one bucket under the null share p0 is exactly 1, and below 1 when the
	// true ratio is below rho0 (composite null). Exact sums over the pmf.
	for _, tc := range []struct {
		n               int64
		s, rho0, rhoTru float64
	}{
		{1, 0.01, 1, 1}, {5, 0.01, 1, 1}, {30, 0.2, 1.5, 1.5}, {100, 0.05, 3, 3}, {12, 0.4, 1, 1},
		{30, 0.2, 1.5, 1}, {100, 0.05, 3, 2},
	} {
		for _, rho := range []float64{2, 10} {
			e0 := NewEProcess([]float64{rho}, nil)
			pTrue := tc.rhoTru * tc.s / (tc.rhoTru*tc.s + 1 - tc.s)
			mean := 0.0
			for x := int64(0); x <= tc.n; x++ {
				e := e0
				e.Update(x, tc.n-x, tc.s, tc.rho0)
				mean += pmfF(x, tc.n, pTrue) * e.E()
			}
			if tc.rhoTru == tc.rho0 {
				require.InDelta(t, 1, mean, 1e-9, "%+v rho=%g", tc, rho)
			} else {
				require.Less(t, mean, 1.0, "%+v rho=%g", tc, rho)
			}
		}
	}
}

func TestEProcessGrid(t *testing.T) {
	var zero EProcess
	require.Equal(t, 1.0, zero.E(), "no evidence yet")
	require.Zero(t, zero.LogE())
	def := NewEProcess(nil, nil)
	explicit := NewEProcess(DefaultEProcessRhos(), []float64{1, 1, 1, 1})
	scaled := NewEProcess([]float64{2, 3, 5, 10}, []float64{0.25, 0.25, 0.25, 0.25})
	for _, e := range []*EProcess{&zero, &def, &explicit, &scaled} {
		e.Update(3, 20, 0.02, 1)
		e.Update(0, 40, 0.02, 1)
		e.Update(2, 5, 0.05, 1.2)
	}
	want := math.Log((math.Exp(directIncrement(3, 20, 0.02, 1, 2)+directIncrement(0, 40, 0.02, 1, 2)+directIncrement(2, 5, 0.05, 1.2, 2)) +
		math.Exp(directIncrement(3, 20, 0.02, 1, 3)+directIncrement(0, 40, 0.02, 1, 3)+directIncrement(2, 5, 0.05, 1.2, 3)) +
		math.Exp(directIncrement(3, 20, 0.02, 1, 5)+directIncrement(0, 40, 0.02, 1, 5)+directIncrement(2, 5, 0.05, 1.2, 5)) +
		math.Exp(directIncrement(3, 20, 0.02, 1, 10)+directIncrement(0, 40, 0.02, 1, 10)+directIncrement(2, 5, 0.05, 1.2, 10))) / 4)
	for i, e := range []EProcess{zero, def, explicit, scaled} {
		require.InDelta(t, want, e.LogE(), 1e-9, "variant %d", i)
	}
	// Unequal weights are normalised: {1, 3} is {0.25, 0.75}.
	a := NewEProcess([]float64{2, 4}, []float64{1, 3})
	b := NewEProcess([]float64{2, 4}, []float64{0.25, 0.75})
	a.Update(4, 10, 0.1, 1)
	b.Update(4, 10, 0.1, 1)
	require.InDelta(t, b.LogE(), a.LogE(), 1e-12)
	require.InDelta(t, math.Log(0.25*math.Exp(directIncrement(4, 10, 0.1, 1, 2))+0.75*math.Exp(directIncrement(4, 10, 0.1, 1, 4))), a.LogE(), 1e-12)
	// A zero weight switches an alternative off.
	c := NewEProcess([]float64{2, 4}, []float64{0, 1})
	c.Update(4, 10, 0.1, 1)
	require.InDelta(t, directIncrement(4, 10, 0.1, 1, 4), c.LogE(), 1e-12)
}

func TestEProcessIgnoredBuckets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		x, y    int64
		s, rho0 float64
	}{
		{"no events", 0, 0, 0.1, 1},
		{"share 0", 1, 1, 0, 1},
		{"share 1", 1, 1, 1, 1},
		{"negative share", 1, 1, -0.1, 1},
		{"NaN share", 1, 1, math.NaN(), 1},
		{"negative count", -1, 3, 0.1, 1},
		{"zero null ratio", 1, 1, 0.1, 0},
		{"NaN null ratio", 1, 1, 0.1, math.NaN()},
		{"infinite null ratio", 1, 1, 0.1, math.Inf(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEProcess(nil, nil)
			e.Update(2, 3, 0.1, 1)
			before := e
			e.Update(tc.x, tc.y, tc.s, tc.rho0)
			require.Equal(t, before, e)
			require.Equal(t, 1, e.Buckets())
		})
	}
}

func TestEProcessResetAndOverflow(t *testing.T) {
	e := NewEProcess([]float64{2, 1000}, nil)
	for range 100 {
		e.Update(1000, 0, 0.5, 1)
	}
	// log E ≈ 100·1000·log(2·1000/1001) + log ½ ≈ 69,200: far beyond exp's range.
	require.True(t, math.IsInf(e.E(), 1))
	require.InDelta(t, 100*directIncrement(1000, 0, 0.5, 1, 1000)+math.Log(0.5), e.LogE(), 1e-6)
	x, y := e.Events()
	require.Equal(t, int64(100_000), x)
	require.Zero(t, y)
	e.Reset()
	require.Zero(t, e.Buckets())
	require.Equal(t, 1.0, e.E())
	x, y = e.Events()
	require.Zero(t, x+y)
	// The grid survives the reset.
	e.Update(1, 0, 0.5, 1)
	require.InDelta(t, math.Log(0.5*math.Exp(directIncrement(1, 0, 0.5, 1, 2))+0.5*math.Exp(directIncrement(1, 0, 0.5, 1, 1000))), e.LogE(), 1e-12)
	// Overwhelming control evidence drives E to 0 without NaN.
	e.Reset()
	for range 100 {
		e.Update(0, 100_000, 0.5, 1)
	}
	require.Zero(t, e.E())
	require.False(t, math.IsNaN(e.LogE()))
}

func TestEProcessCheckGrid(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rhos    []float64
		weights []float64
		ok      bool
	}{
		{"default", nil, nil, true},
		{"explicit", []float64{2, 3, 5, 10}, nil, true},
		{"weighted", []float64{2, 3}, []float64{0.2, 0.8}, true},
		{"eight", []float64{1.1, 1.5, 2, 3, 5, 10, 20, 50}, nil, true},
		{"nine", []float64{1.1, 1.5, 2, 3, 5, 10, 20, 50, 100}, nil, false},
		{"rho 1", []float64{1, 2}, nil, false},
		{"rho below 1", []float64{0.5}, nil, false},
		{"rho NaN", []float64{math.NaN()}, nil, false},
		{"rho Inf", []float64{math.Inf(1)}, nil, false},
		{"weights without rhos", nil, []float64{1}, false},
		{"weight count", []float64{2, 3}, []float64{1}, false},
		{"negative weight", []float64{2, 3}, []float64{-1, 2}, false},
		{"NaN weight", []float64{2, 3}, []float64{math.NaN(), 2}, false},
		{"zero weights", []float64{2, 3}, []float64{0, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckEProcessGrid(tc.rhos, tc.weights)
			if tc.ok {
				require.NoError(t, err)
				require.NotPanics(t, func() { NewEProcess(tc.rhos, tc.weights) })
				return
			}
			require.ErrorIs(t, err, ErrInvalidGrid)
			require.Panics(t, func() { NewEProcess(tc.rhos, tc.weights) })
		})
	}
}

func TestEProcessAllocs(t *testing.T) {
	e := NewEProcess(nil, nil)
	var zero EProcess
	allocs := testing.AllocsPerRun(1000, func() {
		e.Update(2, 50, 0.01, 1.5)
		zero.Update(1, 10, 0.02, 1)
		_ = e.E() + zero.LogE()
		if e.Buckets() > 1<<20 {
			e.Reset()
		}
	})
	require.Zero(t, allocs)
}

// simulateBucket draws one bucket of events: n events uniform in [0, maxN],
// each in the cohort with probability p.
func simulateBucket(rng *rand.Rand, maxN int, p float64) (x, y int64) {
	n := rng.IntN(maxN + 1)
	for range n {
		if rng.Float64() < p {
			x++
		} else {
			y++
		}
	}
	return x, y
}

func TestEProcessNullSimulation(t *testing.T) {
	// Under H0 (every event lands in the cohort with the null share p0 of its
	// bucket) the fraction of runs that ever reach E ≥ 1/α is at most α
	// (Ville), plus Monte-Carlo slack. The same data checked by repeating
	// the fixed-window test on cumulative counts must cross far more often:
	// that is the inflation the e-process exists to avoid, and it shows the
	// simulation can see a test that is not anytime-valid.
	const (
		alpha   = 0.05
		runs    = 1500
		buckets = 400
	)
	for _, tc := range []struct {
		name         string
		rho0, rhoTru float64
	}{
		{"null ratio 1", 1, 1},
		{"margin 1.5 at the margin", 1.5, 1.5},
		{"DiD baseline 3", 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.rho0*1000)))
			threshold := math.Log(1 / alpha)
			crossed, naiveCrossed := 0, 0
			for range runs {
				e := NewEProcess(nil, nil)
				var cx, cy int64
				var rc, rk float64
				hit, naiveHit := false, false
				for b := range buckets {
					s := 0.005 + 0.3*rng.Float64()
					p := tc.rhoTru * s / (tc.rhoTru*s + 1 - s)
					x, y := simulateBucket(rng, 6, p)
					e.Update(x, y, s, tc.rho0)
					if e.LogE() >= threshold {
						hit = true
					}
					cx, cy, rc, rk = cx+x, cy+y, rc+s, rk+1-s
					if !naiveHit && b%5 == 4 && RateRatioPValue(cx, cy, rc, rk, tc.rho0, false) <= alpha {
						naiveHit = true
					}
				}
				if hit {
					crossed++
				}
				if naiveHit {
					naiveCrossed++
				}
			}
			frac := float64(crossed) / runs
			slack := 3 * math.Sqrt(alpha*(1-alpha)/runs)
			t.Logf("e-process crossed in %.4f of runs, repeated fixed test in %.4f", frac, float64(naiveCrossed)/runs)
			require.LessOrEqual(t, frac, alpha+slack)
			require.Greater(t, float64(naiveCrossed)/runs, 1.5*alpha)
		})
	}
}

func TestEProcessAlternativeSimulation(t *testing.T) {
	// H1: rate ratio 5 at s = 1%, α = 10⁻³. The fixed test needs ~11 cohort
	// errors for 80% power (docs/methods.md section 3); the sequential test,
	// though checked after every bucket, must cross after a comparable number
	// (log E grows by ~0.038 per event: ~220 events, ~10 in the cohort, to
	// reach log(4000)), and must stay quiet when the same data is tested
	// against the right DiD baseline (rho0 = 5).
	const (
		alpha   = 1e-3
		runs    = 400
		s       = 0.01
		rho     = 5.0
		maxBkts = 2000
	)
	rng := rand.New(rand.NewPCG(7, 11))
	threshold := math.Log(1 / alpha)
	q := rho * s / (rho*s + 1 - s)
	var cohortAtCross []int64
	falseAlarms := 0
	for range runs {
		e := NewEProcess(nil, nil)
		did := NewEProcess(nil, nil)
		for range maxBkts {
			x, y := simulateBucket(rng, 20, q)
			e.Update(x, y, s, 1)
			did.Update(x, y, s, rho)
			if did.LogE() >= threshold {
				falseAlarms++
				did.Reset()
			}
			if e.LogE() >= threshold {
				cx, _ := e.Events()
				cohortAtCross = append(cohortAtCross, cx)
				break
			}
		}
	}
	slices.Sort(cohortAtCross)
	t.Logf("crossed in %d/%d runs; cohort errors at crossing: median %d, 90th percentile %d; DiD false alarms %d",
		len(cohortAtCross), runs, cohortAtCross[len(cohortAtCross)/2], cohortAtCross[len(cohortAtCross)*9/10], falseAlarms)
	require.Equal(t, runs, len(cohortAtCross), "every run crosses within %d buckets", maxBkts)
	require.LessOrEqual(t, cohortAtCross[len(cohortAtCross)/2], int64(15))
	require.LessOrEqual(t, cohortAtCross[len(cohortAtCross)*9/10], int64(22))
	require.LessOrEqual(t, falseAlarms, 3)
}

func TestOnsetPValue(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n         int64
		pre, post float64
		want      float64
	}{
		{"3:1, two after", 2, 3, 1, 1.0 / 16},
		{"equal periods", 10, 60, 60, math.Pow(0.5, 10)},
		{"a day before, 10 min after, 3 events", 3, 86400, 600, math.Pow(600.0/87000, 3)},
		{"tiny", 100, 99, 1, 1e-200},
		{"no events", 0, 10, 1, 1},
		{"no pre-period", 5, 0, 1, 1},
		{"no post-period", 5, 10, 0, 1},
		{"NaN", 5, math.NaN(), 1, 1},
		{"infinite pre-period", 5, math.Inf(1), 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRel(t, tc.want, OnsetPValue(tc.n, tc.pre, tc.post), 1e-12)
		})
	}
}

func TestStatsBonferroni(t *testing.T) {
	require.Equal(t, 0.05, Bonferroni(0.05, 1))
	require.InDelta(t, 1e-6, Bonferroni(1e-3, 1000), 1e-20)
	require.Equal(t, 0.05, Bonferroni(0.05, 0))
	require.Equal(t, 0.05, Bonferroni(0.05, -4))
}

func TestCriticalCount(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n        int64
		p, alpha float64
		want     int64
	}{
		// docs/methods.md section 3: α = 10⁻³, s = 1%, at the listed totals.
		{"10x row", 73, 0.01, 1e-3, 5},
		{"5x row", 235, 0.01, 1e-3, 9},
		{"3x row", 691, 0.01, 1e-3, 17},
		{"2x row", 2173, 0.01, 1e-3, 38},
		// s^k ≤ α with all in the cohort: 0.01^2 = 1e-4 ≤ 1e-3 < 0.01.
		{"two of two", 2, 0.01, 1e-3, 2},
		{"none possible", 1, 0.01, 1e-3, 2},
		{"none possible at n=0", 0, 0.5, 0.05, 1},
		{"alpha 1", 10, 0.5, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := CriticalCount(tc.n, tc.p, tc.alpha)
			require.Equal(t, tc.want, k)
			if k <= tc.n {
				require.LessOrEqual(t, BinomialUpperTail(k, tc.n, tc.p), tc.alpha)
			}
			if k > 0 {
				require.Greater(t, BinomialUpperTail(k-1, tc.n, tc.p), tc.alpha, "k is the smallest")
			}
		})
	}
	// Against a linear scan.
	for _, n := range []int64{0, 1, 5, 37, 200} {
		for _, p := range []float64{0.001, 0.01, 0.2, 0.7} {
			for _, alpha := range []float64{1e-6, 1e-3, 0.05} {
				want := n + 1
				for k := int64(0); k <= n; k++ {
					if exactUpperTail(k, n, p) <= alpha {
						want = k
						break
					}
				}
				require.Equal(t, want, CriticalCount(n, p, alpha), "n=%d p=%g alpha=%g", n, p, alpha)
			}
		}
	}
}

func TestStatsPowerDesign(t *testing.T) {
	// docs/methods.md section 3, α = 10⁻³, 80% power, s = 1%. The table's totals
	// each reach 80% power; the exact minimum is the same or one less
	// (72, 235, 690, 2172: power 0.8012, 0.80003, 0.8012, 0.80012), so the
	// expected counts match the table to its rounding.
	for _, tc := range []struct {
		rho             float64
		total, crit     int64
		cohortH1, cohH0 float64
	}{
		{10, 73, 5, 6.7, 0.73},
		{5, 235, 9, 11.3, 2.35},
		{3, 691, 17, 20.3, 6.9},
		{2, 2173, 38, 43.0, 21.7},
	} {
		t.Run("", func(t *testing.T) {
			const s, alpha, power = 0.01, 1e-3, 0.8
			q := tc.rho * s / (tc.rho*s + 1 - s)
			require.GreaterOrEqual(t, BinomialUpperTail(tc.crit, tc.total, q), power, "the table's row has the power")
			d, ok := PowerDesign(tc.rho, 1, s, alpha, power)
			require.True(t, ok)
			require.Equal(t, tc.crit, d.Critical)
			require.GreaterOrEqual(t, d.Total, tc.total-1)
			require.LessOrEqual(t, d.Total, tc.total)
			require.InDelta(t, tc.cohortH1, d.CohortH1, 0.1)
			require.InDelta(t, tc.cohH0, d.CohortH0, 0.02)
			require.GreaterOrEqual(t, d.Power, power)
			require.Equal(t, d.CohortH1, PowerCount(tc.rho, 1, s, alpha, power))
			// Minimal: no smaller total reaches the power (exhaustive).
			for n := int64(0); n < d.Total; n++ {
				require.Less(t, BinomialUpperTail(CriticalCount(n, s, alpha), n, q), power, "n=%d", n)
			}
		})
	}
	// "At s = 0.1% the cohort columns barely change; at s = 20% they rise to
	// 10, 15, 27, 55."
	for i, rho := range []float64{10, 5, 3, 2} {
		at1 := PowerCount(rho, 1, 0.01, 1e-3, 0.8)
		require.InDelta(t, at1, PowerCount(rho, 1, 0.001, 1e-3, 0.8), 0.15, "rho=%g", rho)
		require.InDelta(t, []float64{10, 15, 27, 55}[i], PowerCount(rho, 1, 0.2, 1e-3, 0.8), 0.5, "rho=%g", rho)
	}
	// A margin needs more evidence; impossible designs say so.
	require.Greater(t, PowerCount(5, 1.5, 0.01, 1e-3, 0.8), PowerCount(5, 1, 0.01, 1e-3, 0.8))
	for _, bad := range [][5]float64{
		{1, 1, 0.01, 1e-3, 0.8},   // no effect
		{0.5, 1, 0.01, 1e-3, 0.8}, // effect in the wrong direction
		{5, 1, 0, 1e-3, 0.8},
		{5, 1, 0.01, 0, 0.8},
		{5, 1, 0.01, 1e-3, 1},
		{5, 1, 0.01, 0.5, 0.4}, // power below α
	} {
		require.True(t, math.IsInf(PowerCount(bad[0], bad[1], bad[2], bad[3], bad[4]), 1), "%v", bad)
	}
}
