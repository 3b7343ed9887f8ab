package window

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/wikimedia/pretrain-detector/event"
)

// TestAddAllocs guards the hot path: adding a request, or an error whose
// fingerprint is catalogued, allocates nothing: not in the Writer, and not
// in the shard goroutines that apply the batches (AllocsPerRun counts every
// goroutine's allocations). Event times advance so that buckets open and
// close, fastcache is written and the deploy timeline is consulted.
func TestAddAllocs(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   event.Event
		d    *event.Detail
	}{
		{name: "request", ev: req(t0, 3, event.ScopeTrain, 200)},
		{name: "request 5xx pretrain", ev: req(t0, 1, event.ScopePretrain, 503)},
		{name: "known error", ev: errEv(t0, 3, event.ScopeTrain, 0xabcdef), d: detail("Lock wait timeout", "req-1")},
		{name: "known error without detail", ev: errEv(t0, 2, event.ScopePretrain, 0xabcdef)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{Bucket: 10 * time.Second, Length: 10 * time.Minute, Lateness: 30 * time.Second, Shards: 2}, 8)
			ev := tc.ev
			ev.Version = f.versions.ID([]byte("1.47.0-wmf.16"))
			ev.Rollout = f.rollouts.ID([]byte("mw-web.eqiad.main-6f7d8c9b5-x"))
			add := func() {
				ev.Time += 2 * int64(time.Millisecond) // 5000 events per bucket
				f.w.Add(&ev, tc.d)
			}
			// Warm up: catalogue the fingerprint, fill the batch pool, grow
			// the maps to their working size over more than a ring.
			for range 400_000 {
				add()
			}
			f.sync()
			allocs := testing.AllocsPerRun(100_000, add)
			f.sync()
			require.Zero(t, allocs)
			st := f.s.Stats()
			require.Positive(t, st.AddedRequests+st.AddedErrors)
			require.Zero(t, st.DroppedTooOld+st.DroppedTooNew+st.DroppedInvalid)
		})
	}
}
