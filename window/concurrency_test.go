package window

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// TestConcurrentWritersAndReaders runs several Writers and readers at once
// (run it with -race) and checks that nothing is lost or counted twice.
func TestConcurrentWritersAndReaders(t *testing.T) {
	const (
		writers = 4
		perW    = 20_000
		nWikis  = 50
	)
	f := newFixture(t, Config{Bucket: 10 * time.Second, Length: 10 * time.Minute, Lateness: 30 * time.Second, Shards: 3, CatalogueEntries: 200}, nWikis)
	version := f.versions.ID([]byte("1.47.0-wmf.16"))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Readers exercise every read path while the writers run.
	var readers sync.WaitGroup
	for r := range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var counts []Counts
			var fis []FingerprintInfo
			var deploys []Deploy
			var series []int64
			for {
				select {
				case <-stop:
					return
				default:
				}
				from, to := f.s.Oldest(), f.s.Newest()+1
				counts = f.s.SumWikis(event.ScopeTrain, from, to, counts)
				_ = f.s.Sum(wikimap.ID(1+r), event.ScopePretrain, from, to)
				series = f.s.FingerprintSeries(uint64(r+1), 1, event.ScopeTrain, from, to, series)
				_ = f.s.FingerprintTotal(uint64(r+1), event.ScopeTrain, from, to)
				_ = f.s.FingerprintDistinct(uint64(r+1), event.ScopeTrain, from, to)
				fis = f.s.ActiveFingerprints(from, fis)
				deploys = f.s.Deploys(deploys)
				_ = f.s.Stats()
				f.s.Sync()
			}
		}()
	}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wr := f.s.NewWriter()
			for i := range perW {
				at := t0 + int64(i)*int64(10*time.Millisecond) // 200 s of events per writer
				wiki := wikimap.ID(1 + (i*7+w)%nWikis)
				ev := req(at, wiki, event.Scope(i%2), uint16(200+300*(i%5/4)))
				ev.Version = version
				wr.Add(&ev, nil)
				if i%10 == 0 {
					e := errEv(at, wiki, event.ScopeTrain, uint64(1+(i/10)%100))
					wr.Add(&e, detail("m", "req"))
				}
				if i%1000 == 0 {
					wr.Flush()
				}
			}
			wr.Flush()
		}()
	}
	wg.Wait()
	f.s.Sync()
	close(stop)
	readers.Wait()

	st := f.s.Stats()
	require.Equal(t, int64(writers*perW), st.AddedRequests)
	require.Equal(t, int64(writers*perW/10), st.AddedErrors)
	require.Zero(t, st.DroppedTooOld+st.DroppedTooNew+st.DroppedInvalid)
	from, to := t0, t0+int64(time.Hour)
	var total Counts
	for _, c := range f.s.SumWikis(event.ScopeTrain, from, to, nil) {
		total.Requests += c.Requests
		total.Status5xx += c.Status5xx
		total.Errors += c.Errors
	}
	for _, c := range f.s.SumWikis(event.ScopePretrain, from, to, nil) {
		total.Requests += c.Requests
		total.Status5xx += c.Status5xx
	}
	require.Equal(t, Counts{Requests: writers * perW, Status5xx: writers * perW / 5, Errors: writers * perW / 10}, total)
	var fpTotal int64
	for fp := uint64(1); fp <= 100; fp++ {
		fpTotal += f.s.FingerprintTotal(fp, event.ScopeTrain, from, to)
	}
	require.Equal(t, int64(writers*perW/10), fpTotal)
	require.Equal(t, 100, st.CatalogueEntries)
	require.Zero(t, st.CatalogueEvictions)
	var catTotal uint64
	for _, fi := range f.s.ActiveFingerprints(0, nil) {
		catTotal += fi.Count
		require.Equal(t, "m", fi.Message)
	}
	require.Equal(t, uint64(writers*perW/10), catTotal)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	versions, rollouts := event.NewInterner(), event.NewInterner()
	s, err := newStore(Config{Bucket: 10 * time.Second, Length: time.Minute, Lateness: 20 * time.Second, Shards: 2, CatalogueEntries: 2},
		testGroups(8), versions, rollouts, reg)
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	_, err = newStore(Config{}, testGroups(8), versions, rollouts, reg)
	require.Error(t, err, "a second store cannot register the same metrics")

	w := s.NewWriter()
	for _, ev := range []event.Event{
		req(t0+30*sec, 1, event.ScopeTrain, 200),
		req(t0+31*sec, 2, event.ScopeTrain, 200),
		req(t0+31*sec, 2, event.ScopePretrain, 200),
		errEv(t0+32*sec, 2, event.ScopeTrain, 1),
		errEv(t0+32*sec, 2, event.ScopeTrain, 2),
		errEv(t0+33*sec, 3, event.ScopeTrain, 3),
		req(t0-time.Hour.Nanoseconds(), 1, event.ScopeTrain, 200),
		req(t0+time.Hour.Nanoseconds(), 1, event.ScopeTrain, 200),
		req(t0, 0, event.ScopeTrain, 200),
	} {
		w.Add(&ev, nil)
		w.Flush()
		s.Sync()
	}
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP detector_window_events_added_total Events counted into the window, by kind.
# TYPE detector_window_events_added_total counter
detector_window_events_added_total{kind="error"} 3
detector_window_events_added_total{kind="request"} 3
# HELP detector_window_events_dropped_total Events not counted, by reason: too_old (before the ring), too_new (more than the ring length after the newest event), invalid.
# TYPE detector_window_events_dropped_total counter
detector_window_events_dropped_total{reason="invalid"} 1
detector_window_events_dropped_total{reason="too_new"} 1
detector_window_events_dropped_total{reason="too_old"} 1
# HELP detector_window_fingerprint_catalogue_entries Fingerprints in the catalogue.
# TYPE detector_window_fingerprint_catalogue_entries gauge
detector_window_fingerprint_catalogue_entries 2
# HELP detector_window_fingerprint_evictions_total Fingerprints evicted from the catalogue, least recently seen first.
# TYPE detector_window_fingerprint_evictions_total counter
detector_window_fingerprint_evictions_total 1
# HELP detector_window_watermark_timestamp_seconds Newest event time minus the allowed lateness, as a Unix time.
# TYPE detector_window_watermark_timestamp_seconds gauge
detector_window_watermark_timestamp_seconds 1.777636813e+09
# HELP detector_window_requests_total Request events counted into the window, by the wiki's DB section and the scope (pretrain, train) that served them.
# TYPE detector_window_requests_total counter
detector_window_requests_total{scope="pretrain",section="s1"} 0
detector_window_requests_total{scope="pretrain",section="s2"} 1
detector_window_requests_total{scope="train",section="s1"} 1
detector_window_requests_total{scope="train",section="s2"} 1
# HELP detector_window_errors_total Error events counted into the window, by the wiki's DB section and the scope (pretrain, train) that logged them.
# TYPE detector_window_errors_total counter
detector_window_errors_total{scope="pretrain",section="s1"} 0
detector_window_errors_total{scope="pretrain",section="s2"} 0
detector_window_errors_total{scope="train",section="s1"} 1
detector_window_errors_total{scope="train",section="s2"} 2
`), "detector_window_events_added_total", "detector_window_events_dropped_total", "detector_window_fingerprint_catalogue_entries",
		"detector_window_fingerprint_evictions_total", "detector_window_watermark_timestamp_seconds",
		"detector_window_requests_total", "detector_window_errors_total"))
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	require.Equal(t, 30, n, "every series is exported: 20, 2 sections × 2 scopes × 2 kinds, and a deploy time per scope")

	// A Pretrain deploy marker is the newest Pretrain deploy; the train
	// has had none (the versions events showed are where it started).
	s.AddDeploy(Deploy{Scope: event.ScopePretrain, Version: "1.47.0-wmf.17", At: t0 + 40*sec, Source: "api"})
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP detector_window_last_deploy_timestamp_seconds Event time of the newest deploy on the timeline (a new version, rollout or marker; not the state the window started in), by scope, as a Unix time; 0 before any.
# TYPE detector_window_last_deploy_timestamp_seconds gauge
detector_window_last_deploy_timestamp_seconds{scope="pretrain"} 1.77763684e+09
detector_window_last_deploy_timestamp_seconds{scope="train"} 0
`), "detector_window_last_deploy_timestamp_seconds"))
}

// TestSectionBound: the per-section counters' label set is bounded; a wiki
// map with more DB sections than maxSections is refused at start rather
// than exported as an unbounded series set.
func TestSectionBound(t *testing.T) {
	wikis := make([]wikiAttrs, maxSections+2)
	for id := 1; id < len(wikis); id++ {
		wikis[id] = wikiAttrs{section: "s" + strconv.Itoa(id)}
	}
	_, err := newStore(Config{}, wikis, event.NewInterner(), event.NewInterner(), nil)
	require.ErrorContains(t, err, "DB sections")
	s, err := newStore(Config{}, wikis[:maxSections+1], event.NewInterner(), event.NewInterner(), nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
}
