package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/wikimedia/pretrain-detector/redact"
)

// Sending: a batch from the queue POSTed to every Alertmanager, retried
// with backoff while it fails transiently.

const (
	// Retry backoff bounds: quick enough to catch a restarting Alertmanager,
	// slow enough not to hammer one that is down.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// maxErrorBody is how much of an error response is kept for the log.
	maxErrorBody    = 512
	alertsAPIPath   = "api/v2/alerts"
	contentTypeJSON = "application/json"
)

// alertmanager is one send target.
type alertmanager struct {
	endpoint string // <base>/api/v2/alerts
	label    string // the endpoint: metric label and log key
	client   *http.Client
	timeout  time.Duration
	m        amMetrics
}

// sendNext delivers one batch and reports whether it did, so the caller may
// go on with the next.
func (n *Notifier) sendNext(ctx context.Context) bool {
	select {
	case n.sending <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-n.sending }()
	batch := n.popBatch()
	if len(batch) == 0 {
		return false
	}
	n.inflight.Store(int64(len(batch)))
	defer n.inflight.Store(0)
	done, accepted := n.deliver(ctx, batch)
	if !done {
		n.requeue(batch)
		return false
	}
	if !accepted {
		n.lost.Add(int64(len(batch)))
	}
	return true
}

// sendResult is the outcome of one POST to one Alertmanager.
type sendResult int

const (
	sendOK sendResult = iota
	sendRetry
	sendRejected
)

// deliver POSTs a batch to every Alertmanager and retries, with bounded
// exponential backoff, those that fail transiently (network errors, 5xx,
// 429), until one accepts it. A 4xx is final: the same body would be rejected
// again. It returns done = false only when ctx ended first; accepted tells
// whether any Alertmanager took the batch. Once one replica has the batch
// the others are not retried: resends repair what they missed, and one dead
// replica must not stall the queue for the live ones (Prometheus does the
// same).
func (n *Notifier) deliver(ctx context.Context, batch []*entry) (done, accepted bool) {
	pending := make([]int, len(n.ams))
	for i := range pending {
		pending[i] = i
	}
	backoff := minBackoff
	results := make([]sendResult, len(n.ams))
	for attempt := 1; ; attempt++ {
		body, err := n.body(batch)
		if err != nil {
			n.logger.Error("Encoding alerts", "err", err, "count", len(batch))
			return true, false
		}
		var wg sync.WaitGroup
		for _, i := range pending {
			wg.Go(func() { results[i] = n.send(ctx, n.ams[i], body, len(batch), attempt) })
		}
		wg.Wait()
		var retry []int
		for _, i := range pending {
			switch results[i] {
			case sendOK:
				accepted = true
				if attempt > 1 {
					n.logger.Info("Alertmanager accepted alerts after retries", "alertmanager", n.ams[i].label, "attempts", attempt)
				}
			case sendRetry:
				retry = append(retry, i)
			case sendRejected:
			}
		}
		if accepted || len(retry) == 0 {
			return true, accepted
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, false
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
		pending = retry
	}
}

// body encodes the batch's alerts as of now: rebuilt for each attempt, so
// a firing finding's EndsAt always lies 4 resend delays after the attempt
// that carries it, however long Alertmanager was away.
func (n *Notifier) body(batch []*entry) ([]byte, error) {
	now := n.opts.Now()
	alerts := make(models.PostableAlerts, len(batch))
	for i, e := range batch {
		alerts[i] = AlertFor(e.f, n.opts, now)
	}
	b, err := json.Marshal(alerts)
	if err != nil {
		return nil, fmt.Errorf("encode alerts: %w", err)
	}
	return b, nil
}

// send POSTs body to one Alertmanager and classifies the outcome.
func (n *Notifier) send(ctx context.Context, am alertmanager, body []byte, count, attempt int) sendResult {
	rctx, cancel := context.WithTimeout(ctx, am.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, am.endpoint, bytes.NewReader(body))
	if err != nil {
		// The endpoint was validated at construction; this cannot heal.
		n.logger.Error("Building Alertmanager request", "alertmanager", am.label, "err", err)
		am.m.errors.Add(float64(count))
		return sendRejected
	}
	req.Header.Set("Content-Type", contentTypeJSON)
	begin := time.Now()
	resp, err := n.opts.Do(rctx, am.client, req)
	if err == nil {
		err = checkResponse(resp)
	}
	am.m.latency.Observe(time.Since(begin).Seconds())
	if err == nil {
		am.m.sent.Add(float64(count))
		return sendOK
	}
	if ctx.Err() != nil {
		// Shutdown, not the Alertmanager's fault: the batch is requeued.
		return sendRetry
	}
	am.m.errors.Add(float64(count))
	var se *statusError
	rejected := errors.As(err, &se) && se.code >= 400 && se.code < 500 && se.code != http.StatusTooManyRequests
	switch {
	case rejected:
		n.logger.Error("Alertmanager rejected alerts", "alertmanager", am.label, "count", count, "err", err)
		return sendRejected
	case logAttempt(attempt):
		// A down Alertmanager is retried for as long as it is down: log on
		// attempts 1, 2, 4, 8, … only.
		n.logger.Warn("Sending alerts to Alertmanager, will retry", "alertmanager", am.label, "count", count, "attempt", attempt, "err", err)
	}
	return sendRetry
}

// logAttempt reports whether a failed attempt is logged: powers of two.
func logAttempt(attempt int) bool { return attempt&(attempt-1) == 0 }

// statusError is a non-2xx answer.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("bad response status %d", e.code)
	}
	return fmt.Sprintf("bad response status %d: %s", e.code, e.body)
}

// checkResponse consumes and closes resp's body (so the connection is
// reused) and turns a non-2xx status into a statusError.
func checkResponse(resp *http.Response) error {
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close() // nothing left to lose: the status is what counts
	}()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody)) // best effort, for the log
	return &statusError{code: resp.StatusCode, body: redact.Clean(strings.TrimSpace(string(b)), maxErrorBody, false)}
}
