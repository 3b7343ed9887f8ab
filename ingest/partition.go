package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
)

// What the Consumer and the GroupConsumer do alike for each partition they
// read: the fetch settings, the connection to the leader, the reconnect
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

// fetchFailed says what a fetch's error (not io.EOF) means for the
// session. Past retention, the reader moves *next to the oldest record
// still retained and goes on; a timeout is tried again; anything else ends
// the session.
func (r *recordHandler) fetchFailed(conn *kafka.Conn, berr error, next *int64) (retry bool, err error) {
	if errors.Is(berr, kafka.OffsetOutOfRange) {
		first, err := conn.ReadFirstOffset()
		if err != nil {
			return false, fmt.Errorf("read first offset: %w", err)
		}
		r.logger.Warn("Offset out of range; skipping to the oldest retained record", "from", *next, "to", first)
		*next = first
		if _, err := conn.Seek(first, kafka.SeekAbsolute); err != nil {
			return false, fmt.Errorf("seek: %w", err)
		}
		return true, nil
	}
	var ne net.Error
	if errors.As(berr, &ne) && ne.Timeout() {
		return true, nil
	}
	return false, fmt.Errorf("fetch: %w", berr)
}
