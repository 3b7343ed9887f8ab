package window

// reqSet remembers which requests (reqId hashes, mixed with what they are
// counted for) a shard has already counted, so that a request is counted
// once however many lines it logs and however many buckets they fall in.
//
// Memory is fixed: reqSetSets × reqSetWays entries of 16 bytes per shard
// (1 MiB), allocated once. The table is 4-way set associative; a miss
// replaces the way seen longest ago, so an entry lives until
// reqSetSets×reqSetWays newer requests have claimed its set: at 50
// erroring requests a second per shard that is about 20 minutes, the longest
// a web request (60 s) or a job (1200 s) runs. A request older than that
// counts again: the estimate can only overcount, never hide a request.
type reqSet struct {
	keys []uint64 // 0 = empty
	at   []int64  // bucket of the last sighting
}

const (
	reqSetSets = 1 << 14
	reqSetWays = 4
	// reqSetBytes is a shard's reqSet memory, for the memory bound.
	reqSetBytes = reqSetSets * reqSetWays * 16
)

func (r *reqSet) init() {
	r.keys = make([]uint64, reqSetSets*reqSetWays)
	r.at = make([]int64, reqSetSets*reqSetWays)
}

// firstSighting records key as seen in bucket bk and says whether it was
// not in the set before. key must be a well-mixed hash; 0 is mapped to 1.
func (r *reqSet) firstSighting(key uint64, bk int64) bool {
	if key == 0 {
		key = 1
	}
	base := int(key%reqSetSets) * reqSetWays
	oldest := base
	for i := base; i < base+reqSetWays; i++ {
		switch {
		case r.keys[i] == key:
			r.at[i] = max(r.at[i], bk)
			return false
		case r.keys[i] == 0:
			r.keys[i], r.at[i] = key, bk
			return true
		case r.at[i] < r.at[oldest]:
			oldest = i
		}
	}
	r.keys[oldest], r.at[oldest] = key, bk
	return true
}

// mix64 is SplitMix64's finalizer: it spreads a combination of hashes over
// all 64 bits, so that (request, fingerprint) and (request, wiki) keys do
// not collide in structure.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
