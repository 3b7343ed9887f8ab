package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/wikimedia/pretrain-detector/detect"
)

// opsAMStub is an Alertmanager that is down: it answers every POST with
// 503 and remembers when each arrived.
type opsAMStub struct {
	srv *httptest.Server
	mu  sync.Mutex
	at  []time.Time
}

func opsStartAMStub(t *testing.T) *opsAMStub {
	t.Helper()
	s := &opsAMStub{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.at = append(s.at, time.Now())
		s.mu.Unlock()
		http.Error(w, "down for the test", http.StatusServiceUnavailable)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// Posts returns how many POSTs arrived after since.
func (s *opsAMStub) Posts(since time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, at := range s.at {
		if at.After(since) {
			n++
		}
	}
	return n
}

// TestOpsLifecycle: the daemon is not ready until its windows are warm,
// even when the broker drops every first fetch; it then finds the incident
// in the history it read; on SIGTERM (the context's cancellation) it stops
// in order: not ready, ingest stopped and evaluation finished, alerts
// drained under a deadline while HTTP still answers, HTTP last, all within
// 10 s even though Alertmanager is down.
func TestOpsLifecycle(t *testing.T) {
	k := opsStartKafka(t, 2, opsTopics)
	f := opsStartFeeder(t, k, opsFeed{Scenario: "spillover-jobrunner", Seed: 2, SinceOnset: 12 * time.Minute, Live: 10 * time.Minute, Rate: 20})
	<-f.Caught()
	_, preloaded := f.Written()

	// Until released, the broker drops the connection of every fetch from
	// the access log, as a broker that is restarting does, while the error
	// topics are read at once: the warm-up cannot finish, and the
	// watermark, which follows the newest event, is already at the present.
	const slow = "mediawiki.httpd.accesslog"
	var hold atomic.Bool
	hold.Store(true)
	var refused atomic.Int64
	k.c.ControlKey(kmsg.Fetch.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !hold.Load() {
			k.c.DropControl()
			return nil, nil, false
		}
		k.c.KeepControl()
		for _, tp := range req.(*kmsg.FetchRequest).Topics {
			if tp.Topic == slow {
				refused.Add(1)
				return nil, errors.New("the test drops fetches"), true
			}
		}
		return nil, nil, false
	})

	am := opsStartAMStub(t)
	cfg := opsWriteFile(t, t.TempDir(), "detector.yml", opsConfig{Brokers: k.Addr()}.YAML())
	d := opsStartDaemon(t, opsDaemonOptions{ConfigFile: cfg, Alertmanagers: []string{am.srv.URL}})
	h := d.HTTP()

	t.Run("not ready while the warm-up cannot read", func(t *testing.T) {
		require.Eventually(t, func() bool { return refused.Load() >= 4 }, 20*time.Second, 20*time.Millisecond,
			"the access log's partitions tried to fetch, more than once")
		require.Eventually(t, func() bool {
			return h.Metrics(t).Sum("detector_ingest_records_total", "topic", "k8s-mw-eqiad") > 0
		}, 20*time.Second, 20*time.Millisecond, "the error topics are read")
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			code, body := h.Get(t, "/-/ready")
			require.Equal(t, http.StatusServiceUnavailable, code, "ready before a single record was read: %s", body)
			require.Contains(t, body, "warming the windows up from Kafka")
			time.Sleep(50 * time.Millisecond)
		}
		code, _ := h.Get(t, "/-/healthy")
		require.Equal(t, http.StatusOK, code, "alive, just not ready")
		_, status := h.Get(t, "/api/v1/status")
		require.Contains(t, status, `"ready":false`)
		m := h.Metrics(t)
		require.Positive(t, m.Sum("detector_ingest_reconnects_total", "topic", slow), "the dropped fetches are counted")
		require.Zero(t, m.Sum("detector_ingest_records_total", "topic", slow))
		require.Zero(t, opsHistCount(m, "detector_detect_evaluation_duration_seconds"), "nothing is judged on half the data")
	})

	t.Run("ready only once the history is read", func(t *testing.T) {
		hold.Store(false)
		h.WaitReady(t, 60*time.Second)
		m := h.Metrics(t)
		require.GreaterOrEqual(t, int64(m.Sum("detector_ingest_records_total")), preloaded,
			"ready only after every record written before the start was read")
		_, status := h.Get(t, "/api/v1/status")
		require.Contains(t, status, `"ready":true`)
	})

	fd := h.WaitFinding(t, detect.KindSharedDataSpillover, 60*time.Second)
	require.Eventually(t, func() bool { return h.Metrics(t).Sum("detector_notifications_errors_total") > 0 }, 30*time.Second, 100*time.Millisecond,
		"the notifier tries Alertmanager, which is down")
	t.Logf("firing before shutdown: %s", fd.ID)

	t.Run("SIGTERM stops in order within 10 s", func(t *testing.T) {
		type stopped struct {
			took time.Duration
			err  error
		}
		stop := make(chan stopped, 1)
		cancelled := time.Now()
		go func() {
			took, err := d.Stop()
			stop <- stopped{took, err}
		}()

		// (1) Not ready, while HTTP still serves.
		require.Eventually(t, func() bool {
			code, body, err := h.Do(http.MethodGet, "/-/ready", "")
			return err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
		}, 2*time.Second, 10*time.Millisecond, "not ready once stopping")
		// (2, 3) Ingest has stopped and so has evaluation: once the daemon
		// says so (an evaluation under way when the signal came may still
		// end), live records keep arriving in Kafka, the counters stand still.
		require.Eventually(t, func() bool {
			_, body, err := h.Do(http.MethodGet, "/-/ready", "")
			return err == nil && strings.Contains(body, stoppedReason)
		}, 5*time.Second, 10*time.Millisecond, "the pipeline returns soon after the signal")
		m1 := h.Metrics(t)
		_, w1 := f.Written()
		// The feeder writes about once a second (its batches are 20
		// records at 20 requests/s), so wait for a write rather than a
		// fixed time, then for a fetch's MaxWait and more: a reader still
		// running would have counted those records by then.
		require.Eventually(t, func() bool { _, w := f.Written(); return w > w1 }, 5*time.Second, 20*time.Millisecond,
			"the feeder still writes")
		time.Sleep(time.Second)
		m2 := h.Metrics(t)
		require.Equal(t, m1.Sum("detector_ingest_records_total"), m2.Sum("detector_ingest_records_total"), "ingest stopped")
		require.Equal(t, opsHistCount(m1, "detector_detect_evaluation_duration_seconds"), opsHistCount(m2, "detector_detect_evaluation_duration_seconds"),
			"evaluation finished")
		// (4) The alert queue is being drained, (5) with /metrics still up to show it.
		require.Positive(t, am.Posts(cancelled), "alerts are still being sent after the stop began")
		require.Positive(t, m2.Sum("detector_notifications_queue_length")+m2.Sum("detector_notifications_errors_total"))

		var s stopped
		select {
		case s = <-stop:
		case <-time.After(12 * time.Second):
			t.Fatal("runDaemon did not return within 12 s of SIGTERM")
		}
		t.Logf("stopped in %s: %v", s.took.Round(time.Millisecond), s.err)
		require.Less(t, s.took, 10*time.Second)
		require.ErrorContains(t, s.err, "drain alerts", "the alerts Alertmanager never took are reported")
		_, _, err := h.Do(http.MethodGet, "/-/healthy", "")
		require.Error(t, err, "HTTP is closed last")
	})
	require.NoError(t, f.Stop())
}

// opsHistCount is a histogram's sample count.
func opsHistCount(m opsMetrics, name string) uint64 {
	f, ok := m[name]
	if !ok || len(f.GetMetric()) == 0 {
		return 0
	}
	return f.GetMetric()[0].GetHistogram().GetSampleCount()
}
