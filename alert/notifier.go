package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/version"

	"github.com/wikimedia/pretrain-detector/detect"
)

// resolvedRetention is how long a resolved finding is remembered after it
// was sent, so the detector repeating it does not re-send it (Prometheus
// keeps resolved alerts 15 minutes too).
const resolvedRetention = 15 * time.Minute

// sentState is what Update remembers about a finding.
type sentState struct {
	lastSent      time.Time
	resolvedUntil time.Time // non-zero once the resolved alert went out
}

// Notifier sends findings to Alertmanager as alerts, after Prometheus's
// notifier: a bounded queue that drops the oldest alerts on overflow, one
// send loop woken through a channel of capacity 1, batches POSTed to every
// Alertmanager with retries, and a drain on shutdown.
type Notifier struct {
	opts    NotifierOptions
	logger  *slog.Logger
	metrics *metrics
	clients []*http.Client
	ams     []alertmanager

	more chan struct{} // cap 1: coalesces wake-ups of the send loop

	// sending (cap 1) serialises batch delivery between Run and Drain, so
	// the queue drains in order and Drain waits for an in-flight batch, but
	// no longer than its deadline.
	sending chan struct{}

	mu     sync.Mutex
	queue  []*entry
	queued map[string]*entry     // finding ID → its entry in queue
	sent   map[string]*sentState // finding ID → what was last enqueued

	// lost counts alerts dropped on overflow or rejected by every
	// Alertmanager since the last Drain, which reports them.
	lost atomic.Int64
	// inflight is the size of the batch being delivered, for Drain to
	// report alongside the queue.
	inflight atomic.Int64
}

// NewNotifier validates o and builds a Notifier; its metrics are registered
// with reg (nil: not registered). Start it with Run.
func NewNotifier(o NotifierOptions, logger *slog.Logger, reg prometheus.Registerer) (*Notifier, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("alertmanager notifier options: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{
		opts:    o,
		logger:  logger,
		more:    make(chan struct{}, 1),
		sending: make(chan struct{}, 1),
		queued:  make(map[string]*entry),
		sent:    make(map[string]*sentState),
	}
	sets, names := o.sendSets()
	targets, err := endpoints(sets, names)
	if err != nil {
		return nil, fmt.Errorf("alertmanager notifier options: %w", err)
	}
	for si, set := range sets {
		client, err := promconfig.NewClientFromConfig(set.HTTPConfig, "alertmanager",
			promconfig.WithUserAgent("pretrain-detector/"+version.Version))
		if err != nil {
			return nil, fmt.Errorf("alertmanager notifier options: %s: HTTP client: %w", strings.TrimSuffix(names[si], ".URLs"), err)
		}
		n.clients = append(n.clients, client)
	}
	n.metrics, err = newMetrics(reg, func() float64 { return float64(n.QueueLen()) })
	if err != nil {
		return nil, err
	}
	n.metrics.queueCapacity.Set(float64(o.QueueCapacity))
	for _, tg := range targets {
		n.ams = append(n.ams, alertmanager{endpoint: tg.endpoint, label: tg.endpoint, client: n.clients[tg.set],
			timeout: sets[tg.set].Timeout, m: n.metrics.forAlertmanager(tg.endpoint)})
	}
	return n, nil
}

// QueueLen is the number of alerts waiting to be sent.
func (n *Notifier) QueueLen() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queue)
}

// Notify is Update(all) (Sink): what to send is decided from the whole set
// after every evaluation, so a resend is decided in the evaluation
// goroutine too, the notifier's only caller.
func (n *Notifier) Notify(_, all []detect.Finding) error {
	n.Update(all)
	return nil
}

// Update takes the detector's current set of findings. A firing finding is
// queued when it is new or when ResendDelay has passed since it was last
// queued; a resolved one is queued once and remembered for 15 minutes (and
// as long as it stays in the set) so that repeats are not re-sent; a pending
// one is not sent. A firing finding missing from the set is forgotten: its
// alert ends in Alertmanager at its EndsAt, 4 resend delays after the last
// send, as a Prometheus alert does when its rule goes away.
func (n *Notifier) Update(findings []detect.Finding) {
	now := n.opts.Now()
	n.mu.Lock()
	present := make(map[string]struct{}, len(findings))
	queuedAny := false
	noID, dropped := 0, 0
	for i := range findings {
		f := &findings[i]
		if f.ID == "" {
			// Without an ID there is no identity to resend or resolve by:
			// a detect bug, not something to guess around.
			noID++
			continue
		}
		s := n.sent[f.ID]
		switch f.State {
		case detect.StateFiring:
			present[f.ID] = struct{}{}
			if s != nil && s.resolvedUntil.IsZero() && now.Sub(s.lastSent) < n.opts.ResendDelay {
				continue
			}
			n.sent[f.ID] = &sentState{lastSent: now}
		case detect.StateResolved:
			present[f.ID] = struct{}{}
			if s != nil && !s.resolvedUntil.IsZero() {
				continue
			}
			n.sent[f.ID] = &sentState{lastSent: now, resolvedUntil: now.Add(resolvedRetention)}
		default:
			continue
		}
		dropped += n.enqueueLocked(f.ID, *f)
		queuedAny = true
	}
	for id, s := range n.sent {
		if _, ok := present[id]; ok {
			continue
		}
		if s.resolvedUntil.IsZero() || now.After(s.resolvedUntil) {
			delete(n.sent, id)
		}
	}
	n.mu.Unlock()
	n.logDropped(dropped)
	if noID > 0 {
		n.logger.Warn("Findings without an ID not sent to Alertmanager", "count", noID)
	}
	if queuedAny {
		n.wake()
	}
}

// Run is the send loop: it waits for queued alerts and sends them in batches
// until ctx is done. A batch interrupted by ctx goes back to the queue for
// Drain.
func (n *Notifier) Run(ctx context.Context) {
	// Alerts queued before Run started have already signalled n.more, so
	// nothing is missed.
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.more:
		}
		for ctx.Err() == nil {
			if !n.sendNext(ctx) {
				break
			}
		}
	}
}

// Drain sends every queued alert, retrying under ctx, for shutdown: call it
// after cancelling Run's context, with a deadline. It returns an error when
// alerts remain queued at the deadline, or when alerts were dropped on
// overflow or rejected by every Alertmanager since the previous Drain, so a
// replay can exit non-zero if an alert failed to send.
func (n *Notifier) Drain(ctx context.Context) error {
	// The connections are not needed after a drain; closing them lets the
	// process (and leak-checking tests) end without lingering readers.
	defer func() {
		for _, c := range n.clients {
			c.CloseIdleConnections()
		}
	}()
	for ctx.Err() == nil {
		if !n.sendNext(ctx) {
			break
		}
	}
	var errs []error
	if q := int64(n.QueueLen()) + n.inflight.Load(); q > 0 {
		err := fmt.Errorf("drain alert queue: %d alerts not sent", q)
		if cause := context.Cause(ctx); cause != nil {
			err = fmt.Errorf("drain alert queue: %d alerts not sent: %w", q, cause)
		}
		errs = append(errs, err)
	}
	if lost := n.lost.Swap(0); lost > 0 {
		errs = append(errs, fmt.Errorf("drain alert queue: %d alerts were dropped on overflow or rejected by every Alertmanager", lost))
	}
	return errors.Join(errs...)
}
