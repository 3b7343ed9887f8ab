package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
)

// What the Consumer does for each partition it reads: the fetch settings, the connection to the leader, the reconnect
// loop and the handling of a failed fetch.

// fetchConfig returns the fetch settings of a partition reader, with
// defaults for what is unset: a short MaxWait, so that shutdown is quick,
// and fetches of up to 16 MiB.
func fetchConfig(maxWait time.Duration, minBytes, maxBytes int) kafka.ReadBatchConfig {
	c := kafka.ReadBatchConfig{MaxWait: maxWait, MinBytes: minBytes, MaxBytes: maxBytes}
	if c.MaxWait <= 0 {
		c.MaxWait = 250 * time.Millisecond
	}
	if c.MinBytes <= 0 {
		c.MinBytes = 1
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 16 << 20
	}
	return c
}

// fetchDeadline bounds one fetch: the broker answers within MaxWait, and a
// connection silent for 10 s longer is broken.
func fetchDeadline(c kafka.ReadBatchConfig) time.Time {
	return time.Now().Add(c.MaxWait + 10*time.Second)
}

// keepReading runs session until it reports done or ctx ends. After each
// failure it counts a reconnect, logs it and waits, 100 ms doubling up to
// 10 s, before the next session.
func (r *recordHandler) keepReading(ctx context.Context, session func(context.Context) (done bool, err error)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		done, err := session(ctx)
		if done {
			return
		}
		if err != nil && ctx.Err() == nil {
			r.pm.reconnects.Inc()
			r.logger.Warn("Partition read interrupted; reconnecting", "err", err, "backoff", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// connect dials the leader of partition part of src.Topic through the
// first of src.Brokers that answers, and counts the connection in the
// connected gauge until release. The connection is closed when ctx ends,
// which unblocks a pending fetch.
func (r *recordHandler) connect(ctx context.Context, src Source, part int) (conn *kafka.Conn, release func(), err error) {
	var errs []error
	for _, b := range src.Brokers {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err = src.Dialer.DialLeader(dctx, "tcp", b, src.Topic, part)
		cancel()
		if err == nil {
			break
		}
		errs = append(errs, err)
	}
	if conn == nil {
		return nil, nil, fmt.Errorf("dial leader of partition %d: %w", part, errors.Join(errs...))
	}
	r.pm.connected.Inc()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	return conn, func() {
		stop()
		_ = conn.Close()
		r.pm.connected.Dec()
	}, nil
}

// fetchAnswered tells whether a fetch that ended with berr got the
// broker's answer: no error, the end of the batch, or the long poll's
// timeout (kafka-go reports an empty fetch that waited MaxWait as
// RequestTimedOut).
func fetchAnswered(berr error) bool {
	return berr == nil || errors.Is(berr, io.EOF) || errors.Is(berr, kafka.RequestTimedOut)
}

// fetchFailed says what a fetch's error (not io.EOF) means for the
// session. A timeout is tried again; anything else ends the session,
// including an offset out of range: kafka-go's connection is unusable
// after a failed fetch, so the next session resolves it on a fresh one
// (resumeAt).
func (r *recordHandler) fetchFailed(berr error) (retry bool, err error) {
	var ne net.Error
	if errors.As(berr, &ne) && ne.Timeout() {
		return true, nil
	}
	return false, fmt.Errorf("fetch: %w", berr)
}

// resumeAt returns where a session resumes reading at next, so that the
// partition never retries a vanished offset for ever. Below the log start
// (retention deleted records while the reader was away or behind): the
// oldest record, and the records skipped are counted as lost. Above the
// end (the log was truncated, as after an unclean leader election, or the
// topic recreated): the high-water mark, not lower, so that nothing the
// window already holds is read twice, and the offsets that vanished are
// counted.
func (r *recordHandler) resumeAt(conn *kafka.Conn, next int64) (int64, error) {
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return 0, fmt.Errorf("read offsets: %w", err)
	}
	switch {
	case next < first:
		r.pm.lost[lostRetention].Add(float64(first - next))
		r.logger.Warn("Offset out of range: records deleted before they were read; resuming at the oldest retained record",
			"from", next, "to", first, "lost", first-next)
		return first, nil
	case next > last:
		r.pm.lost[lostTruncation].Add(float64(next - last))
		r.logger.Warn("Offset out of range: the log ends below the position; resuming at its end",
			"from", next, "to", last, "vanished", next-last)
		return last, nil
	}
	return next, nil
}
