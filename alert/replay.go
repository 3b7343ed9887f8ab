package alert

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wikimedia/pretrain-detector/detect"
)

// ReplayNotifier sends replayed findings to Alertmanager. Alertmanager drops
// an alert whose endsAt has passed, so a past incident is sent as firing now
// (StartsAt stays the estimated onset; the started_at and detected_at
// annotations carry the event times), with the label replay="true" so routes
// and silences can tell it from a live one, and resolved when the replay
// ends. A nil *ReplayNotifier does nothing.
type ReplayNotifier struct {
	n      *Notifier
	logger *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	firing []detect.Finding // in the order they fired
	seen   map[string]bool
}

// NewReplayNotifier starts a notifier with opts, its alerts labelled
// replay="true", and its sender goroutine, which Finish ends.
func NewReplayNotifier(opts NotifierOptions, logger *slog.Logger, reg prometheus.Registerer) (*ReplayNotifier, error) {
	labels := maps.Clone(opts.ExtraLabels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels["replay"] = "true"
	opts.ExtraLabels = labels
	n, err := NewNotifier(opts, logger, reg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &ReplayNotifier{n: n, logger: logger, cancel: cancel, done: make(chan struct{}), seen: map[string]bool{}}
	go func() {
		defer close(a.done)
		n.Run(ctx)
	}()
	return a, nil
}

// Notify sends the findings that fired for the first time (Sink). A
// finding that resolves during the replay stays firing here: the replayed
// incident is happening now, until the replay ends.
func (a *ReplayNotifier) Notify(changed, _ []detect.Finding) error {
	// Called after every evaluation; without a change there is nothing
	// new to send, and the progress tick (Resend) keeps the rest alive.
	if a == nil || len(changed) == 0 {
		return nil
	}
	a.mu.Lock()
	for _, f := range changed {
		if f.State == detect.StateFiring && !a.seen[f.ID] {
			a.seen[f.ID] = true
			a.firing = append(a.firing, f)
		}
	}
	a.mu.Unlock()
	a.Resend()
	return nil
}

// Resend hands the notifier the firing set; it re-sends each alert once per
// resend delay, so a long replay keeps the early ones alive.
func (a *ReplayNotifier) Resend() {
	if a == nil {
		return
	}
	a.mu.Lock()
	fs := append([]detect.Finding(nil), a.firing...)
	a.mu.Unlock()
	if len(fs) > 0 {
		a.n.Update(fs)
	}
}

// Finish holds the alerts firing for hold (only after a complete replay),
// resolves them all, ends the sender and drains the queue for at most
// drain. Its error says whether an alert could not be sent.
func (a *ReplayNotifier) Finish(ctx context.Context, hold, drain time.Duration, complete bool) error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	fs := append([]detect.Finding(nil), a.firing...)
	a.mu.Unlock()
	if len(fs) > 0 && complete && hold > 0 {
		a.logger.Info("Holding replayed alerts firing before resolving them", "alerts", len(fs), "hold", hold)
		t := time.NewTimer(hold)
		tick := time.NewTicker(10 * time.Second)
	wait:
		for {
			select {
			case <-ctx.Done():
				break wait
			case <-t.C:
				break wait
			case <-tick.C:
				a.n.Update(fs)
			}
		}
		t.Stop()
		tick.Stop()
	}
	if len(fs) > 0 {
		now := time.Now().UTC()
		for i := range fs {
			fs[i].State, fs[i].ResolvedAt = detect.StateResolved, &now
		}
		a.n.Update(fs)
	}
	a.cancel()
	<-a.done
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := a.n.Drain(dctx); err != nil {
		return fmt.Errorf("alertmanager: %w", err)
	}
	if len(fs) > 0 {
		a.logger.Info("Replayed alerts resolved", "alerts", len(fs))
	}
	return nil
}
