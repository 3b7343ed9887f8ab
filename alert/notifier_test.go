package alert

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/config"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/detect"
)

const (
	testAM1 = "http://am1.example:9093"
	testAM2 = "http://am2.example:9093"
)

// fakeCall is one POST seen by fakeAM.
type fakeCall struct {
	url    string
	at     time.Time
	alerts models.PostableAlerts
}

// fakeAM stands in for Alertmanager through NotifierOptions.Do: it records
// each request and answers with respond(url, per-URL call number).
type fakeAM struct {
	t       *testing.T
	respond func(url string, n int) (int, error)

	mu    sync.Mutex
	calls []fakeCall
	perAM map[string]int
}

func newFakeAM(t *testing.T, respond func(url string, n int) (int, error)) *fakeAM {
	if respond == nil {
		respond = func(string, int) (int, error) { return http.StatusOK, nil }
	}
	return &fakeAM{t: t, respond: respond, perAM: map[string]int{}}
}

func (f *fakeAM) do(_ context.Context, _ *http.Client, r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	var alerts models.PostableAlerts
	if err := json.Unmarshal(body, &alerts); err != nil {
		f.t.Errorf("request body is not PostableAlerts: %v", err)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("Content-Type = %q", ct)
	}
	if r.Method != http.MethodPost {
		f.t.Errorf("method = %s", r.Method)
	}
	base := strings.TrimSuffix(r.URL.String(), "/api/v2/alerts")
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{url: base, at: time.Now(), alerts: alerts})
	n := f.perAM[base]
	f.perAM[base]++
	f.mu.Unlock()
	code, err := f.respond(base, n)
	if err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader("response body")), Header: http.Header{}}, nil
}

func (f *fakeAM) Calls() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.calls...)
}

// ids lists the finding_id labels of a call's alerts.
func (c fakeCall) ids() []string {
	out := make([]string, len(c.alerts))
	for i, a := range c.alerts {
		out[i] = a.Labels[labelFindingID]
	}
	return out
}

// testFinding is a finding that started 10 minutes ago: on the wall clock,
// or the synctest bubble's.
func testFinding(id string, state detect.State) detect.Finding {
	t0 := time.Now().Add(-10 * time.Minute).UTC()
	return detect.Finding{
		ID:          id,
		Kind:        detect.KindSharedDataSpillover,
		Severity:    "critical",
		State:       state,
		Summary:     "errors on s3 wikis after Pretrain deploy",
		Wikis:       []string{"enwiktionary", "testwiki"},
		StartedAt:   t0,
		DetectedAt:  t0.Add(2 * time.Minute),
		Fingerprint: "00ff" + id,
	}
}

func findings(n int, state detect.State) []detect.Finding {
	out := make([]detect.Finding, n)
	for i := range out {
		out[i] = testFinding(fmt.Sprintf("f%04d", i), state)
	}
	return out
}

// newTestNotifier builds a notifier on fake for use inside a synctest bubble.
func newTestNotifier(t *testing.T, o NotifierOptions, fake *fakeAM) (*Notifier, *prometheus.Registry) {
	t.Helper()
	if o.URLs == nil {
		o.URLs = []string{testAM1}
	}
	o.Do = fake.do
	reg := prometheus.NewRegistry()
	n, err := NewNotifier(o, slog.New(slog.DiscardHandler), reg)
	require.NoError(t, err)
	return n, reg
}

// runNotifier starts Run and returns a stop function that cancels and waits.
func runNotifier(n *Notifier) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.Run(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

func TestNotifierResendTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeAM(t, nil)
		n, _ := newTestNotifier(t, NotifierOptions{ResendDelay: time.Minute}, fake)
		stop := runNotifier(n)
		defer stop()

		start := time.Now()
		f := testFinding("spill1", detect.StateFiring)
		n.Update([]detect.Finding{f})
		synctest.Wait()
		calls := fake.Calls()
		require.Len(t, calls, 1)
		require.Len(t, calls[0].alerts, 1)
		require.Equal(t, start.Add(4*time.Minute).UTC(), time.Time(calls[0].alerts[0].EndsAt).UTC())
		require.Equal(t, f.StartedAt, time.Time(calls[0].alerts[0].StartsAt).UTC())

		// Within the resend delay nothing is re-sent, however often the
		// detector repeats the finding.
		for range 5 {
			time.Sleep(10 * time.Second)
			n.Update([]detect.Finding{f})
		}
		synctest.Wait()
		require.Len(t, fake.Calls(), 1)

		// Once the delay has passed it is, with a fresh EndsAt.
		time.Sleep(10 * time.Second)
		now := time.Now()
		require.Equal(t, time.Minute, now.Sub(start))
		n.Update([]detect.Finding{f})
		synctest.Wait()
		calls = fake.Calls()
		require.Len(t, calls, 2)
		require.Equal(t, now.Add(4*time.Minute).UTC(), time.Time(calls[1].alerts[0].EndsAt).UTC())

		// Every resend delay from then on.
		for i := range 3 {
			time.Sleep(time.Minute)
			n.Update([]detect.Finding{f})
			synctest.Wait()
			calls = fake.Calls()
			require.Len(t, calls, 3+i)
			require.Equal(t, time.Now().Add(4*time.Minute).UTC(), time.Time(calls[2+i].alerts[0].EndsAt).UTC())
		}

		// Resolved: sent once, EndsAt = the resolve time.
		time.Sleep(20 * time.Second)
		resolvedAt := time.Now().Add(-5 * time.Second)
		r := f
		r.State = detect.StateResolved
		r.ResolvedAt = &resolvedAt
		n.Update([]detect.Finding{r})
		synctest.Wait()
		calls = fake.Calls()
		require.Len(t, calls, 6)
		require.Equal(t, resolvedAt.UTC(), time.Time(calls[5].alerts[0].EndsAt).UTC())
		require.Equal(t, resolvedAt.UTC().Format(time.RFC3339), calls[5].alerts[0].Annotations[annResolvedAt])

		// Repeats of the resolved finding are not re-sent, for as long as
		// the detector keeps it (here 20 minutes, past the 15-minute memory).
		for range 20 {
			time.Sleep(time.Minute)
			n.Update([]detect.Finding{r})
		}
		synctest.Wait()
		require.Len(t, fake.Calls(), 6)

		// Gone from the set and past 15 minutes: forgotten.
		n.Update(nil)
		n.mu.Lock()
		require.Empty(t, n.sent)
		n.mu.Unlock()

		// Firing again after a resolve is a new alert, sent at once.
		n.Update([]detect.Finding{f})
		synctest.Wait()
		require.Len(t, fake.Calls(), 7)
	})
}

func TestNotifierResolvedRememberedWhenAbsent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeAM(t, nil)
		n, _ := newTestNotifier(t, NotifierOptions{}, fake)
		stop := runNotifier(n)
		defer stop()

		r := testFinding("r1", detect.StateResolved) // never seen firing: sent once, EndsAt = now
		n.Update([]detect.Finding{r})
		synctest.Wait()
		calls := fake.Calls()
		require.Len(t, calls, 1)
		require.Equal(t, time.Now().UTC(), time.Time(calls[0].alerts[0].EndsAt).UTC())

		// Dropping out of the set and coming back within 15 minutes does not
		// re-send it.
		time.Sleep(5 * time.Minute)
		n.Update(nil)
		time.Sleep(5 * time.Minute)
		n.Update([]detect.Finding{r})
		synctest.Wait()
		require.Len(t, fake.Calls(), 1)

		// After 15 minutes out of the set it is forgotten.
		n.Update(nil)
		time.Sleep(16 * time.Minute)
		n.Update(nil)
		n.Update([]detect.Finding{r})
		synctest.Wait()
		require.Len(t, fake.Calls(), 2)
	})
}

func TestNotifierPendingAndMissingID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeAM(t, nil)
		n, _ := newTestNotifier(t, NotifierOptions{}, fake)
		stop := runNotifier(n)
		defer stop()

		noID := testFinding("", detect.StateFiring)
		n.Update([]detect.Finding{testFinding("p", detect.StatePending), noID})
		synctest.Wait()
		require.Empty(t, fake.Calls())
		require.Zero(t, n.QueueLen())

		// A firing finding that disappears is forgotten, so it is sent again
		// at once if it comes back.
		f := testFinding("f", detect.StateFiring)
		n.Update([]detect.Finding{f})
		time.Sleep(time.Second)
		n.Update(nil)
		n.Update([]detect.Finding{f})
		synctest.Wait()
		require.Len(t, fake.Calls(), 2)
	})
}

func TestNotifierBatching(t *testing.T) {
	tests := []struct {
		name      string
		batchSize int
		alerts    int
		want      []int
	}{
		{name: "default 256", alerts: 600, want: []int{256, 256, 88}},
		{name: "exactly one batch", alerts: 256, want: []int{256}},
		{name: "batch size 100", batchSize: 100, alerts: 250, want: []int{100, 100, 50}},
		{name: "one alert", alerts: 1, want: []int{1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fake := newFakeAM(t, nil)
				n, _ := newTestNotifier(t, NotifierOptions{BatchSize: tc.batchSize}, fake)
				// Queue first, then start: the send loop must pick up
				// alerts queued before it ran.
				fs := findings(tc.alerts, detect.StateFiring)
				n.Update(fs)
				stop := runNotifier(n)
				defer stop()
				synctest.Wait()

				var sizes []int
				var ids []string
				for _, c := range fake.Calls() {
					sizes = append(sizes, len(c.alerts))
					ids = append(ids, c.ids()...)
				}
				require.Equal(t, tc.want, sizes)
				want := make([]string, len(fs))
				for i, f := range fs {
					want[i] = f.ID
				}
				require.Equal(t, want, ids, "every alert once, in order")
				require.Equal(t, float64(tc.alerts), counterValue(t, n.ams[0].m.sent))
				require.Zero(t, n.QueueLen())
			})
		})
	}
}

func TestNotifierOverflowDropsOldest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeAM(t, nil)
		var logs strings.Builder
		reg := prometheus.NewRegistry()
		n, err := NewNotifier(NotifierOptions{URLs: []string{testAM1}, QueueCapacity: 10, Do: fake.do}, slog.New(slog.NewTextHandler(&logs, nil)), reg)
		require.NoError(t, err)

		fs := findings(15, detect.StateFiring)
		n.Update(fs[:8])
		n.Update(fs[8:])
		require.Equal(t, 10, n.QueueLen())
		require.Equal(t, 1, strings.Count(logs.String(), "Alert queue full"), "one line per Update, not per alert: %s", logs.String())
		require.Contains(t, logs.String(), "count=5")
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP detector_notifications_dropped_total Total number of alerts dropped, oldest first, because the queue was full.
# TYPE detector_notifications_dropped_total counter
detector_notifications_dropped_total 5
# HELP detector_notifications_queue_length Number of alerts waiting in the queue.
# TYPE detector_notifications_queue_length gauge
detector_notifications_queue_length 10
# HELP detector_notifications_queue_capacity Capacity of the alert queue.
# TYPE detector_notifications_queue_capacity gauge
detector_notifications_queue_capacity 10
`), "detector_notifications_dropped_total", "detector_notifications_queue_length", "detector_notifications_queue_capacity"))

		stop := runNotifier(n)
		defer stop()
		synctest.Wait()
		calls := fake.Calls()
		require.Len(t, calls, 1)
		var want []string
		for _, f := range fs[5:] {
			want = append(want, f.ID)
		}
		require.Equal(t, want, calls[0].ids(), "the five oldest were dropped")

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err = n.Drain(ctx)
		require.ErrorContains(t, err, "5 alerts were dropped")
		require.NoError(t, n.Drain(ctx), "the loss is reported once")
	})
}

func TestNotifierQueuedVersionReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeAM(t, nil)
		n, _ := newTestNotifier(t, NotifierOptions{ResendDelay: time.Minute}, fake)
		f := testFinding("a", detect.StateFiring)
		n.Update([]detect.Finding{f})
		time.Sleep(time.Minute)
		n.Update([]detect.Finding{f}) // resend while the first is still queued
		require.Equal(t, 1, n.QueueLen())
		r := f
		r.State = detect.StateResolved
		n.Update([]detect.Finding{r})
		require.Equal(t, 1, n.QueueLen())

		stop := runNotifier(n)
		defer stop()
		synctest.Wait()
		calls := fake.Calls()
		require.Len(t, calls, 1)
		require.Equal(t, time.Now().UTC(), time.Time(calls[0].alerts[0].EndsAt).UTC(), "the newest version, resolved, is what is sent")
	})
}

func TestNotifierRetry(t *testing.T) {
	errRefused := errors.New("dial tcp 10.0.0.1:9093: connect: connection refused")
	tests := []struct {
		name      string
		responses []any // int status or error, per attempt; then 200
		wantCalls int
		wantGaps  []time.Duration
		wantSent  bool
	}{
		{name: "5xx retried", responses: []any{503, 500}, wantCalls: 3, wantGaps: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, wantSent: true},
		{name: "network error retried", responses: []any{errRefused}, wantCalls: 2, wantGaps: []time.Duration{100 * time.Millisecond}, wantSent: true},
		{name: "429 retried", responses: []any{429}, wantCalls: 2, wantGaps: []time.Duration{100 * time.Millisecond}, wantSent: true},
		{name: "400 not retried", responses: []any{400}, wantCalls: 1},
		{name: "401 not retried", responses: []any{401}, wantCalls: 1},
		{
			name:      "backoff capped at 10s",
			responses: []any{502, 502, 502, 502, 502, 502, 502, 502, 502, 502},
			wantCalls: 11,
			wantGaps: []time.Duration{
				100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
				1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 10 * time.Second, 10 * time.Second, 10 * time.Second,
			},
			wantSent: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fake := newFakeAM(t, func(_ string, i int) (int, error) {
					if i >= len(tc.responses) {
						return http.StatusOK, nil
					}
					switch r := tc.responses[i].(type) {
					case int:
						return r, nil
					case error:
						return 0, r
					}
					panic("bad response")
				})
				n, _ := newTestNotifier(t, NotifierOptions{}, fake)
				stop := runNotifier(n)
				defer stop()

				n.Update(findings(3, detect.StateFiring))
				synctest.Wait()
				// Nothing more happens later either.
				time.Sleep(5 * time.Minute)
				synctest.Wait()

				calls := fake.Calls()
				require.Len(t, calls, tc.wantCalls)
				for i, gap := range tc.wantGaps {
					require.Equal(t, gap, calls[i+1].at.Sub(calls[i].at), "gap before attempt %d", i+2)
				}
				require.Zero(t, n.QueueLen())
				require.Equal(t, float64(3*(len(tc.responses))), counterValue(t, n.ams[0].m.errors))
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				if tc.wantSent {
					require.Equal(t, 3.0, counterValue(t, n.ams[0].m.sent))
					require.NoError(t, n.Drain(ctx))
				} else {
					require.Zero(t, counterValue(t, n.ams[0].m.sent))
					require.ErrorContains(t, n.Drain(ctx), "rejected by every Alertmanager")
				}
			})
		})
	}
}

func TestNotifierHA(t *testing.T) {
	tests := []struct {
		name      string
		respond   func(url string, i int) (int, error)
		wantCalls map[string]int
		wantErrs  map[string]float64
		wantSent  map[string]float64
	}{
		{
			name:      "both up: both get the batch",
			respond:   func(string, int) (int, error) { return 200, nil },
			wantCalls: map[string]int{testAM1: 1, testAM2: 1},
			wantErrs:  map[string]float64{testAM1: 0, testAM2: 0},
			wantSent:  map[string]float64{testAM1: 2, testAM2: 2},
		},
		{
			name: "one down: the live one is enough, the dead one is not retried",
			respond: func(url string, _ int) (int, error) {
				if url == testAM1 {
					return 503, nil
				}
				return 200, nil
			},
			wantCalls: map[string]int{testAM1: 1, testAM2: 1},
			wantErrs:  map[string]float64{testAM1: 2, testAM2: 0},
			wantSent:  map[string]float64{testAM1: 0, testAM2: 2},
		},
		{
			name: "both down, then one back: only failing ones retried until one accepts",
			respond: func(url string, i int) (int, error) {
				if url == testAM2 && i >= 2 {
					return 200, nil
				}
				return 503, nil
			},
			wantCalls: map[string]int{testAM1: 3, testAM2: 3},
			wantErrs:  map[string]float64{testAM1: 6, testAM2: 4},
			wantSent:  map[string]float64{testAM1: 0, testAM2: 2},
		},
		{
			name: "one rejects, one down: the down one is retried",
			respond: func(url string, i int) (int, error) {
				if url == testAM1 {
					return 400, nil
				}
				if i == 0 {
					return 502, nil
				}
				return 200, nil
			},
			wantCalls: map[string]int{testAM1: 1, testAM2: 2},
			wantErrs:  map[string]float64{testAM1: 2, testAM2: 2},
			wantSent:  map[string]float64{testAM1: 0, testAM2: 2},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fake := newFakeAM(t, tc.respond)
				n, _ := newTestNotifier(t, NotifierOptions{URLs: []string{testAM1, testAM2 + "/"}}, fake)
				stop := runNotifier(n)
				defer stop()
				n.Update(findings(2, detect.StateFiring))
				synctest.Wait()
				time.Sleep(time.Minute)
				synctest.Wait()

				fake.mu.Lock()
				require.Equal(t, tc.wantCalls, fake.perAM)
				fake.mu.Unlock()
				for i, am := range n.ams {
					url := []string{testAM1, testAM2}[i]
					require.Equal(t, url+"/api/v2/alerts", am.label)
					require.Equal(t, tc.wantErrs[url], counterValue(t, am.m.errors), url)
					require.Equal(t, tc.wantSent[url], counterValue(t, am.m.sent), url)
				}
				require.Zero(t, n.QueueLen())
			})
		})
	}
}

func TestNotifierShutdownAndDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		up := false
		fake := newFakeAM(t, func(string, int) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			if up {
				return 200, nil
			}
			return 0, errors.New("connection refused")
		})
		n, _ := newTestNotifier(t, NotifierOptions{}, fake)
		stop := runNotifier(n)
		n.Update(findings(3, detect.StateFiring))
		time.Sleep(30 * time.Second) // Alertmanager down: retrying
		synctest.Wait()
		require.Zero(t, n.QueueLen(), "the batch is in flight")
		stop()
		require.Equal(t, 3, n.QueueLen(), "an interrupted batch goes back to the queue")

		// Drain under a deadline while it is still down: error, nothing lost.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := n.Drain(ctx)
		cancel()
		require.ErrorContains(t, err, "3 alerts not sent")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 3, n.QueueLen())

		// Back up: Drain sends everything.
		mu.Lock()
		up = true
		mu.Unlock()
		before := len(fake.Calls())
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, n.Drain(ctx))
		require.Zero(t, n.QueueLen())
		calls := fake.Calls()
		require.Len(t, calls, before+1)
		require.Equal(t, []string{"f0000", "f0001", "f0002"}, calls[before].ids())
	})
}

func TestNotifierDrainWaitsForRunButNotPastDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeAM(t, func(string, int) (int, error) { return 503, nil })
		n, _ := newTestNotifier(t, NotifierOptions{}, fake)
		stop := runNotifier(n)
		defer stop()
		n.Update(findings(1, detect.StateFiring))
		synctest.Wait()
		// Run holds the batch and keeps retrying; Drain must give up at its
		// deadline rather than wait for Run.
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		require.ErrorContains(t, n.Drain(ctx), "1 alerts not sent")
		require.Equal(t, 3*time.Second, time.Since(start))
	})
}

func TestNotifierMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := NewNotifier(NotifierOptions{URLs: []string{testAM1, "https://am2.example/prefix"}, QueueCapacity: 50}, nil, reg)
	require.NoError(t, err)

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP detector_notifications_dropped_total Total number of alerts dropped, oldest first, because the queue was full.
# TYPE detector_notifications_dropped_total counter
detector_notifications_dropped_total 0
# HELP detector_notifications_errors_total Total number of alerts in send attempts to an Alertmanager that failed, counted per attempt.
# TYPE detector_notifications_errors_total counter
detector_notifications_errors_total{alertmanager="http://am1.example:9093/api/v2/alerts"} 0
detector_notifications_errors_total{alertmanager="https://am2.example/prefix/api/v2/alerts"} 0
# HELP detector_notifications_queue_capacity Capacity of the alert queue.
# TYPE detector_notifications_queue_capacity gauge
detector_notifications_queue_capacity 50
# HELP detector_notifications_queue_length Number of alerts waiting in the queue.
# TYPE detector_notifications_queue_length gauge
detector_notifications_queue_length 0
# HELP detector_notifications_sent_total Total number of alerts sent to an Alertmanager and accepted by it.
# TYPE detector_notifications_sent_total counter
detector_notifications_sent_total{alertmanager="http://am1.example:9093/api/v2/alerts"} 0
detector_notifications_sent_total{alertmanager="https://am2.example/prefix/api/v2/alerts"} 0
`), "detector_notifications_dropped_total", "detector_notifications_errors_total", "detector_notifications_queue_capacity",
		"detector_notifications_queue_length", "detector_notifications_sent_total"))

	// The latency histograms exist, at zero, for both, and no credentials
	// leak into a label.
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var latency int
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				require.NotContains(t, l.GetValue(), "secret")
			}
		}
		if mf.GetName() == "detector_notifications_latency_seconds" {
			latency = len(mf.GetMetric())
		}
	}
	require.Equal(t, 2, latency)

	// A second notifier on the same registry is an error, not a panic.
	_, err = NewNotifier(NotifierOptions{URLs: []string{testAM1}}, nil, reg)
	require.ErrorContains(t, err, "register notifier metrics")
}

func TestNewNotifierValidation(t *testing.T) {
	tests := []struct {
		name    string
		opts    NotifierOptions
		wantErr string
	}{
		{name: "no URLs", opts: NotifierOptions{}, wantErr: "URLs: at least one"},
		{name: "bad scheme", opts: NotifierOptions{URLs: []string{"ftp://am:9093"}}, wantErr: "URLs[0]"},
		{name: "no host", opts: NotifierOptions{URLs: []string{testAM1, "http:///x"}}, wantErr: "URLs[1]"},
		{name: "unparsable", opts: NotifierOptions{URLs: []string{"http://am:port"}}, wantErr: "URLs[0]"},
		{name: "relative", opts: NotifierOptions{URLs: []string{"am:9093"}}, wantErr: "URLs[0]"},
		{name: "query", opts: NotifierOptions{URLs: []string{"http://am:9093/?x=1"}}, wantErr: "URLs[0]"},
		{name: "duplicate", opts: NotifierOptions{URLs: []string{testAM1, testAM1 + "/"}}, wantErr: "URLs[1]"},
		{name: "credentials not echoed", opts: NotifierOptions{URLs: []string{"ftp://u:hunter2@am"}}, wantErr: "URLs[0]"},
		{name: "credentials not echoed on parse error", opts: NotifierOptions{URLs: []string{"http://u:hunter2@am:port"}}, wantErr: "URLs[0]"},
		{name: "user info refused, pointing to the config file", opts: NotifierOptions{URLs: []string{testAM1, "http://u:hunter2@am2:9093"}}, wantErr: "URLs[1]: URL \"http://u:xxxxx@am2:9093\": user info in an Alertmanager URL is refused"},
		{name: "user info refused in a set", opts: NotifierOptions{Sets: []AlertmanagerSet{{URLs: []string{"http://u:hunter2@am2:9093"}}}}, wantErr: "alerting.alertmanagers[].basic_auth.password_file"},
		{name: "duplicate across sets", opts: NotifierOptions{URLs: []string{testAM1}, Sets: []AlertmanagerSet{{URLs: []string{testAM1}}}}, wantErr: "Sets[0].URLs[0]"},
		{name: "bad set HTTP config", opts: NotifierOptions{Sets: []AlertmanagerSet{{URLs: []string{testAM1}, HTTPConfig: config.HTTPClientConfig{BearerToken: "a", BearerTokenFile: "/b"}}}}, wantErr: "Sets[0].HTTPConfig"},
		{name: "negative resend", opts: NotifierOptions{URLs: []string{testAM1}, ResendDelay: -time.Second}, wantErr: "ResendDelay"},
		{name: "negative capacity", opts: NotifierOptions{URLs: []string{testAM1}, QueueCapacity: -1}, wantErr: "QueueCapacity"},
		{name: "batch too big", opts: NotifierOptions{URLs: []string{testAM1}, BatchSize: 257}, wantErr: "BatchSize"},
		{name: "negative timeout", opts: NotifierOptions{URLs: []string{testAM1}, Timeout: -1}, wantErr: "Timeout"},
		{name: "bad external URL", opts: NotifierOptions{URLs: []string{testAM1}, ExternalURL: "detector:9797"}, wantErr: "ExternalURL"},
		{name: "bad runbook", opts: NotifierOptions{URLs: []string{testAM1}, RunbookURL: "wikitech/<kind>"}, wantErr: "RunbookURL"},
		{name: "bad dashboard", opts: NotifierOptions{URLs: []string{testAM1}, DashboardURL: "javascript:alert(1)"}, wantErr: "DashboardURL"},
		{name: "bad extra label name", opts: NotifierOptions{URLs: []string{testAM1}, ExtraLabels: map[string]string{"bad-name": "x"}}, wantErr: "ExtraLabels: invalid label name"},
		{name: "reserved extra label", opts: NotifierOptions{URLs: []string{testAM1}, ExtraLabels: map[string]string{"severity": "page"}}, wantErr: "cannot be overridden"},
		{name: "double underscore", opts: NotifierOptions{URLs: []string{testAM1}, ExtraLabels: map[string]string{"__name__": "x"}}, wantErr: "ExtraLabels"},
		{name: "empty extra value", opts: NotifierOptions{URLs: []string{testAM1}, ExtraLabels: map[string]string{"replay": ""}}, wantErr: "ExtraLabels"},
		{name: "control char in extra value", opts: NotifierOptions{URLs: []string{testAM1}, ExtraLabels: map[string]string{"replay": "a\nb"}}, wantErr: "ExtraLabels"},
		{
			name:    "bad HTTP config",
			opts:    NotifierOptions{URLs: []string{testAM1}, HTTPConfig: config.HTTPClientConfig{BearerToken: "a", BearerTokenFile: "/b"}},
			wantErr: "HTTPConfig",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewNotifier(tc.opts, nil, prometheus.NewRegistry())
			require.ErrorContains(t, err, tc.wantErr)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}

	n, err := NewNotifier(NotifierOptions{
		URLs:         []string{"http://am:9093/prefix/", "https://am2"},
		Sets:         []AlertmanagerSet{{URLs: []string{"https://am3:9093"}, Timeout: 3 * time.Second}},
		ExternalURL:  "https://detector.example/",
		DashboardURL: "https://grafana.example/d/pretrain?var-kind=<kind>",
		ExtraLabels:  map[string]string{"replay": "true"},
	}, nil, nil)
	require.NoError(t, err)
	require.Equal(t, "http://am:9093/prefix/api/v2/alerts", n.ams[0].endpoint)
	require.Equal(t, "https://am2/api/v2/alerts", n.ams[1].endpoint)
	require.Equal(t, "https://am2/api/v2/alerts", n.ams[1].label)
	require.Equal(t, "https://am3:9093/api/v2/alerts", n.ams[2].endpoint)
	require.Equal(t, 10*time.Second, n.ams[0].timeout)
	require.Equal(t, 3*time.Second, n.ams[2].timeout)
	require.NotSame(t, n.ams[0].client, n.ams[2].client, "each set has its own client")
	require.Equal(t, time.Minute, n.opts.ResendDelay)
	require.Equal(t, 10000, n.opts.QueueCapacity)
	require.Equal(t, 256, n.opts.BatchSize)
	require.Equal(t, 10*time.Second, n.opts.Timeout)
}

// TestNotifierTLSBasicAuth sends through the real HTTP client built from
// HTTPConfig to a TLS server that checks the credentials.
func TestNotifierTLSBasicAuth(t *testing.T) {
	type received struct {
		path   string
		auth   string
		ua     string
		alerts models.PostableAlerts
	}
	got := make(chan received, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var alerts models.PostableAlerts
		err := json.NewDecoder(r.Body).Decode(&alerts)
		got <- received{path: r.URL.Path, auth: r.Header.Get("Authorization"), ua: r.Header.Get("User-Agent"), alerts: alerts}
		switch user, pass, ok := r.BasicAuth(); {
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadRequest)
		case !ok || user != "detector" || pass != "s3cret":
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		}
	}))
	// The unknown-CA case fails handshakes on purpose: keep them out of the output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))

	tests := []struct {
		name      string
		password  string
		ca        string
		wantSent  float64
		wantCalls int
	}{
		{name: "good credentials", password: "s3cret", ca: caPEM, wantSent: 1, wantCalls: 1},
		{name: "bad credentials: 401, not retried", password: "wrong", ca: caPEM, wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			n, err := NewNotifier(NotifierOptions{
				URLs: []string{srv.URL + "/am"},
				HTTPConfig: config.HTTPClientConfig{
					BasicAuth: &config.BasicAuth{Username: "detector", Password: config.Secret(tc.password)},
					TLSConfig: config.TLSConfig{CA: tc.ca, MinVersion: config.TLSVersion(tls.VersionTLS12)},
				},
			}, nil, reg)
			require.NoError(t, err)
			stop := runNotifier(n)
			n.Update(findings(1, detect.StateFiring))
			// Stop only once the answer is in, or the batch is requeued.
			require.Eventually(t, func() bool {
				return counterValue(t, n.ams[0].m.sent)+counterValue(t, n.ams[0].m.errors) >= 1
			}, 10*time.Second, 5*time.Millisecond)
			stop()
			require.Zero(t, n.QueueLen())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			drainErr := n.Drain(ctx)
			var calls []received
			for len(got) > 0 {
				calls = append(calls, <-got)
			}
			require.Len(t, calls, tc.wantCalls)
			r := calls[0]
			require.Equal(t, "/am/api/v2/alerts", r.path)
			require.True(t, strings.HasPrefix(r.auth, "Basic "), r.auth)
			require.True(t, strings.HasPrefix(r.ua, "pretrain-detector/"), r.ua)
			require.Len(t, r.alerts, 1)
			require.Equal(t, "f0000", r.alerts[0].Labels[labelFindingID])
			require.Equal(t, tc.wantSent, counterValue(t, n.ams[0].m.sent))
			if tc.wantSent == 0 {
				require.ErrorContains(t, drainErr, "rejected")
				require.Equal(t, 1.0, counterValue(t, n.ams[0].m.errors))
			} else {
				require.NoError(t, drainErr)
			}
		})
	}

	t.Run("unknown CA: TLS error, retried", func(t *testing.T) {
		n, err := NewNotifier(NotifierOptions{URLs: []string{srv.URL}}, nil, prometheus.NewRegistry())
		require.NoError(t, err)
		stop := runNotifier(n)
		n.Update(findings(1, detect.StateFiring))
		require.Eventually(t, func() bool { return counterValue(t, n.ams[0].m.errors) >= 2 }, 10*time.Second, 10*time.Millisecond)
		stop()
		require.Zero(t, counterValue(t, n.ams[0].m.sent))
		require.Equal(t, 1, n.QueueLen(), "kept for a later attempt")
		require.Empty(t, got, "the handler never ran: the handshake failed")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.Error(t, n.Drain(ctx))
	})
}
