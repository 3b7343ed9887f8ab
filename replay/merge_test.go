package replay

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// fedRecord is one record handed to a partition's sink.
type fedRecord struct {
	kafkaTime int64
	ev        event.Event
	reqID     string
}

// mergeRecords runs the merge over partitions fed directly to their sinks,
// without Kafka, a Kafka batch being every perBatch records, and returns
// the replay for inspection. The partitions are fed concurrently with the
// merge, as the Consumer's goroutines would.
func mergeRecords(t *testing.T, wikis *wikimap.Map, parts [][]fedRecord, perBatch int, from, to time.Time) *Replay {
	t.Helper()
	cfg := config.Default()
	cfg.OverrideBrokers([]string{"127.0.0.1:1"}) // never dialled
	r, err := New(Options{Config: cfg, Wikis: wikis, From: from, To: to})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r.ctx = ctx
	r.in = make(chan *chunk, len(parts)*replayCredits)
	sinks := make([]*replaySink, len(parts))
	for i := range parts {
		s, ok := r.newSink().(*replaySink)
		require.True(t, ok)
		sinks[i] = s
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, recs := range parts {
		wg.Go(func() {
			s := sinks[i]
			for j, rec := range recs {
				s.Record(rec.kafkaTime)
				s.Add(&rec.ev, &event.Detail{Message: []byte("m"), Exemplar: []byte("x"), ReqID: []byte(rec.reqID)})
				if (j+1)%perBatch == 0 {
					s.Flush()
				}
			}
			s.Flush()
			s.Done()
		})
	}
	go func() {
		wg.Wait()
		close(done) // every partition has been read
	}()
	require.NoError(t, newMerge(r, len(parts)).run(ctx, done), "merge did not finish: a deadlock?")
	<-done
	return r
}

// TestMergeStepLongerThanCredits: a step (one bucket of Kafka time) can
// hold many more Kafka batches than a partition may have waiting; the merge
// must free the credits of what it has applied before the step ends.
func TestMergeStepLongerThanCredits(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	parts := make([][]fedRecord, 2)
	for i := range 2000 {
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond).UnixNano() // 20 s: two steps
		ev := event.Event{Time: at, Kind: event.KindRequest, Wiki: wikimap.ID(1 + i%50), Status: 200}
		parts[i%2] = append(parts[i%2], fedRecord{kafkaTime: at, ev: ev})
	}
	r := mergeRecords(t, wikis, parts, 10, t0.Add(time.Hour), t0.Add(2*time.Hour)) // 100 batches per step and partition
	require.Equal(t, int64(2000), r.events.Load())
	var n int64
	for _, c := range r.st.Store.SumWikis(event.ScopeTrain, t0.UnixNano(), t0.Add(time.Minute).UnixNano(), nil) {
		n += c.Requests
	}
	require.Equal(t, int64(2000), n)
}

// TestMergeOrderDoesNotCount: the window estimates distinct requests per
// (fingerprint, bucket, shard) from the last few request ids seen, so the
// order errors are applied in, and the shard count, could change it. The
// merge applies them in a canonical order and the replay's shard count does
// not follow the cores: one partition or three, one core or two, the
// estimate is the same.
func TestMergeOrderDoesNotCount(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	// One request id, then four others, then the first again, in one
	// bucket on five wikis of one shard: a ring of four recent ids forgets
	// the first.
	var recs []fedRecord
	for i, id := range []string{"A", "B", "C", "D", "E", "A"} {
		at := t0.Add(time.Duration(i) * time.Second).UnixNano()
		ev := event.Event{Time: at, Kind: event.KindError, Wiki: wikimap.ID(1 + defaultReplayShards*(i%5)), Fingerprint: 42}
		recs = append(recs, fedRecord{kafkaTime: at, ev: ev, reqID: id})
	}
	layouts := map[string][][]fedRecord{
		"one partition":    {recs},
		"three partitions": {{recs[0], recs[5]}, {recs[1], recs[3]}, {recs[2], recs[4]}},
		"reversed":         {{recs[2], recs[4]}, {recs[1], recs[3]}, {recs[0], recs[5]}},
	}
	var got []int64
	for name, parts := range layouts {
		for _, procs := range []int{1, 2} {
			t.Run(name, func(t *testing.T) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				r := mergeRecords(t, wikis, parts, 1, t0.Add(time.Hour), t0.Add(2*time.Hour))
				got = append(got, r.st.Store.FingerprintDistinct(42, event.ScopeTrain, t0.UnixNano(), t0.Add(time.Minute).UnixNano()))
				require.Equal(t, int64(6), r.st.Store.FingerprintTotal(42, event.ScopeTrain, t0.UnixNano(), t0.Add(time.Minute).UnixNano()))
				require.Equal(t, int64(6), r.events.Load())
			})
		}
	}
	for _, n := range got {
		require.Equal(t, got[0], n, "%v", got)
	}
}
