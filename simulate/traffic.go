package simulate

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// topWikis are the busiest wikis on the MediaWiki app servers, busiest
// first: their weights follow a Zipf law by rank. Everything else is weighted
// by its size class (large/medium/small dblists) and a per-wiki log-normal
// factor.
func topWikis() []string {
	return []string{
		"enwiki", "commonswiki", "wikidatawiki", "dewiki", "jawiki", "frwiki", "eswiki",
		"ruwiki", "itwiki", "zhwiki", "ptwiki", "plwiki", "fawiki", "nlwiki", "arwiki",
		"metawiki", "idwiki", "trwiki", "ukwiki", "svwiki",
	}
}

// wikiWeight is a wiki's relative share of train-fleet requests. With these
// constants enwiki takes about a fifth of the fleet, the large wikis about
// 85%, and the ~900 s3 wikis together about 18%, close to the real mix.
func wikiWeight(w *wikimap.Wiki, rank int) float64 {
	// The per-wiki factor comes from the dbname, not the seed: a wiki's share
	// of traffic is a property of the wiki, so it stays put across runs.
	ln := math.Exp(0.9*hashNormal(w.DBName) - 0.405) // mean 1
	var x float64
	switch {
	case rank > 0:
		x = 100 / math.Pow(float64(rank), 1.1)
	case w.Size == "large":
		x = 3 * ln
	case w.Size == "medium":
		x = 0.15 * ln
	default:
		x = 0.01 * ln
	}
	if w.Test || w.DBName == "test2wiki" {
		// Test wikis see steady QA and bot traffic, unrelated to their size.
		x = 0.3
	}
	if w.Closed {
		x *= 0.002 // read-only: bots and the odd reader
	}
	if w.Private {
		x *= 0.1 // logged-in staff only
	}
	return x
}

// hashNormal maps s to a standard normal deviate (Box-Muller on its hash).
func hashNormal(s string) float64 {
	h := xxhash.Sum64String(s)
	u1 := (float64(h>>40) + 0.5) / (1 << 24)
	u2 := (float64(h&(1<<24-1)) + 0.5) / (1 << 24)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// dailyFactor is the diurnal traffic multiplier at t: 1 ± 0.4, trough at
// 04:00 UTC, peak at 15:00 UTC. Rising and falling halves are half cosines of
// 11 and 13 hours, so the curve is continuous and averages 1 over a day.
func dailyFactor(t time.Time) float64 {
	h := float64(t.Unix()%86400) / 3600 // hours since midnight UTC
	if h < 4 {
		h += 24
	}
	if h < 15 { // 04:00 → 15:00 rising
		return 1 - 0.4*math.Cos(math.Pi*(h-4)/11)
	}
	return 1 + 0.4*math.Cos(math.Pi*(h-15)/13) // 15:00 → 04:00 falling
}

// meanDailyFactor averages dailyFactor over [from, to), per minute.
func meanDailyFactor(from, to time.Time) float64 {
	if !to.After(from) {
		return dailyFactor(from)
	}
	var sum float64
	n := 0
	for t := from; t.Before(to); t = t.Add(time.Minute) {
		sum += dailyFactor(t.Add(30 * time.Second))
		n++
	}
	return sum / float64(n)
}

// alias is Vose's alias table: O(1) draws from a discrete distribution.
type alias struct {
	prob  []float64
	alias []int32
	items []int32 // the values drawn
}

// newAlias builds a table over items with the given non-negative weights.
// Items of weight 0 are never drawn. It returns nil if all weights are 0.
func newAlias(items []int32, weights []float64) *alias {
	var total float64
	for _, w := range weights {
		total += w
	}
	if total <= 0 {
		return nil
	}
	n := len(weights)
	a := &alias{prob: make([]float64, n), alias: make([]int32, n), items: items}
	scaled := make([]float64, n)
	small := make([]int32, 0, n)
	large := make([]int32, 0, n)
	for i, w := range weights {
		scaled[i] = w * float64(n) / total
		if scaled[i] < 1 {
			small = append(small, int32(i))
		} else {
			large = append(large, int32(i))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		a.prob[s] = scaled[s]
		a.alias[s] = l
		scaled[l] += scaled[s] - 1
		if scaled[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	for _, l := range large {
		a.prob[l] = 1
	}
	for _, s := range small { // rounding leftovers
		a.prob[s] = 1
	}
	return a
}

func (a *alias) draw(rng *rand.Rand) int32 {
	i := rng.IntN(len(a.prob))
	if rng.Float64() >= a.prob[i] {
		i = int(a.alias[i])
	}
	return a.items[i]
}

// trafficModel is the per-wiki share of train requests.
type trafficModel struct {
	weight []float64 // by wiki ID, normalised to sum 1 over train wikis
	train  *alias    // draws a train wiki ID
}

func newTrafficModel(wikis *wikimap.Map, testwiki wikimap.ID) *trafficModel {
	rank := make(map[string]int)
	for i, name := range topWikis() {
		rank[name] = i + 1
	}
	m := &trafficModel{weight: make([]float64, wikis.Len()+1)}
	items := make([]int32, 0, wikis.Len())
	ws := make([]float64, 0, wikis.Len())
	var total float64
	for id := wikimap.ID(1); int(id) <= wikis.Len(); id++ {
		w := wikis.Wiki(id)
		if id == testwiki || w.Host == "" {
			continue // testwiki has its own rate; a wiki without a host cannot be requested
		}
		x := wikiWeight(w, rank[w.DBName])
		m.weight[id] = x
		total += x
		items = append(items, int32(id))
		ws = append(ws, x)
	}
	for i := range m.weight {
		m.weight[i] /= total
	}
	m.train = newAlias(items, ws)
	return m
}

// share is the summed train share of the wikis in set.
func (m *trafficModel) share(set []bool) float64 {
	var s float64
	for id, in := range set {
		if in {
			s += m.weight[id]
		}
	}
	return s
}
