package alert

import (
	"slices"

	"github.com/wikimedia/pretrain-detector/detect"
)

// The Notifier's queue: findings waiting to be sent, at most one entry per
// finding, the oldest dropped on overflow.

// entry is one queued finding; id is its ID, so a newer version of a queued
// finding replaces the older one instead of queueing twice. The alert is
// built from it on every send attempt, not once: EndsAt of a firing alert is
// "now + 4 × resend delay", and a body built before a long outage would
// reach Alertmanager already ended.
type entry struct {
	id string
	f  detect.Finding
}

// wake tells the send loop that alerts are queued; a wake-up already
// pending covers this one, so the caller never blocks.
func (n *Notifier) wake() {
	select {
	case n.more <- struct{}{}:
	default:
	}
}

// enqueueLocked queues an alert, replacing a still-queued older version of
// the same finding, and drops the oldest alerts beyond the capacity,
// returning how many.
func (n *Notifier) enqueueLocked(id string, f detect.Finding) int {
	if e, ok := n.queued[id]; ok {
		e.f = f
		return 0
	}
	e := &entry{id: id, f: f}
	n.queue = append(n.queue, e)
	n.queued[id] = e
	return n.trimLocked()
}

// trimLocked drops the oldest entries beyond the capacity, counts them and
// returns how many, for the caller to log once rather than per alert.
func (n *Notifier) trimLocked() int {
	over := len(n.queue) - n.opts.QueueCapacity
	if over <= 0 {
		return 0
	}
	for _, e := range n.queue[:over] {
		if n.queued[e.id] == e {
			delete(n.queued, e.id)
		}
	}
	n.queue = slices.Delete(n.queue, 0, over)
	n.metrics.dropped.Add(float64(over))
	n.lost.Add(int64(over))
	return over
}

// logDropped logs alerts dropped on overflow, once per call rather than
// per alert.
func (n *Notifier) logDropped(count int) {
	if count > 0 {
		n.logger.Warn("Alert queue full, dropping alerts", "count", count, "capacity", n.opts.QueueCapacity)
	}
}

// popBatch takes up to BatchSize entries off the front of the queue.
func (n *Notifier) popBatch() []*entry {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := min(n.opts.BatchSize, len(n.queue))
	if k == 0 {
		return nil
	}
	batch := slices.Clone(n.queue[:k])
	for _, e := range batch {
		if n.queued[e.id] == e {
			delete(n.queued, e.id)
		}
	}
	n.queue = slices.Delete(n.queue, 0, k)
	return batch
}

// requeue puts an undelivered batch back at the front of the queue, so that
// Drain, or Run again, sends it first. An alert whose finding has a newer
// version queued meanwhile is superseded and not put back.
func (n *Notifier) requeue(batch []*entry) {
	n.mu.Lock()
	back := make([]*entry, 0, len(batch)+len(n.queue))
	for _, e := range batch {
		if _, ok := n.queued[e.id]; ok {
			continue
		}
		n.queued[e.id] = e
		back = append(back, e)
	}
	n.queue = append(back, n.queue...)
	dropped := n.trimLocked()
	n.mu.Unlock()
	n.logDropped(dropped)
}
