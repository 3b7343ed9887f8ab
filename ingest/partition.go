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

// The partition reader: what the Consumer does for each partition it
// reads, in the partition's own goroutine. It finds where to start (by
// Kafka timestamp), fetches from the leader, hands every record to its
// recordHandler, publishes its progress (partState) once per fetch, and
// reconnects, with backoff, after a failure.

// partitionReader is the state of one partition's goroutine.
type partitionReader struct {
	recordHandler
	c    *Consumer
	src  Source
	part int
	st   *partState
	// reader reads each fetch's records into one reused buffer.
	reader *batchReader

	offset     int64 // next offset to read; -1 before the first seek
	stopOffset int64 // with End: the high-water mark at the first fetch
	atOldest   bool  // seekStart found nothing retained before Start: check the first record's time
}

func (c *Consumer) readPartition(ctx context.Context, s Source, st *partState) {
	part := st.key.partition
	dec, err := c.opts.NewDecoder(s.Format)
	if err != nil {
		c.logger.Error("Decoder", "topic", s.Topic, "err", err) // checked in NewConsumer; cannot happen
		return
	}
	r := &partitionReader{
		recordHandler: newRecordHandler(dec, c.opts.NewSink(), c.metrics.forTopic(s.Topic), c.logger.With("topic", s.Topic, "partition", part)),
		c:             c, src: s, part: part, st: st, reader: newBatchReader(),
		offset: -1, stopOffset: -1,
	}
	if r.timed != nil {
		defer r.timed.Done()
	}
	r.keepReading(ctx, func(ctx context.Context) (bool, error) {
		done, err := r.session(ctx)
		if err != nil {
			r.failed(err)
		}
		return done, err
	})
}

// failed records that the partition cannot be read at the moment.
func (r *partitionReader) failed(err error) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.st.failing.IsZero() {
		r.st.failing = time.Now()
	}
	r.st.idle = false
	r.st.lastError = err.Error()
}

// fetched publishes a fetch's outcome: ok when the broker answered.
func (r *partitionReader) fetched(ok bool, hwm int64) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	st := r.st
	st.progress = max(st.progress, r.newest)
	if !ok {
		if st.failing.IsZero() {
			st.failing = time.Now()
		}
		st.idle = false
		return
	}
	st.failing, st.lastError = time.Time{}, ""
	st.offset = r.offset
	st.idle = r.offset >= hwm
	if r.stopOffset >= 0 && r.offset >= r.stopOffset {
		st.caught = true
	}
}

// session reads from one connection until it fails. done means the
// partition has nothing more to read (replay reached its end).
func (r *partitionReader) session(ctx context.Context) (done bool, err error) {
	conn, release, err := r.connect(ctx, r.src, r.part)
	if err != nil {
		return false, err
	}
	defer release()
	at, err := r.position(conn)
	if err != nil {
		return false, err
	}
	// Assigned only on success: a failed look-up must leave the position.
	r.offset = at
	if _, err := conn.Seek(r.offset, kafka.SeekAbsolute|kafka.SeekDontCheck); err != nil {
		return false, fmt.Errorf("seek to offset %d: %w", r.offset, err)
	}
	for ctx.Err() == nil {
		if err := conn.SetReadDeadline(fetchDeadline(r.c.fetch)); err != nil {
			return false, fmt.Errorf("set deadline: %w", err)
		}
		if r.c.opts.MaxAhead > 0 { // once per fetch, not per record
			r.notAfter = time.Now().Add(r.c.opts.MaxAhead).UnixNano()
		}
		batch := conn.ReadBatchWith(r.c.fetch)
		hwm := batch.HighWaterMark()
		if batch.Err() != nil {
			// The fetch failed before its response: the high-water mark
			// is not the broker's (0) and must not end the warm-up.
			hwm = -1
		}
		if r.stopOffset < 0 {
			r.stopOffset = hwm
		}
		past := false
		for {
			rec, err := r.reader.next(batch, r.offset)
			if err != nil {
				break
			}
			r.offset = rec.Offset + 1
			if r.atOldest {
				r.atOldest = false
				r.checkOldest(rec.Time)
			}
			if !r.c.opts.End.IsZero() && rec.Time.After(r.c.opts.End) {
				past = true
				break
			}
			r.handle(&rec)
		}
		berr := batch.Close()
		r.sink.Flush()
		r.publish()
		if hwm >= 0 {
			r.pm.lag.Set(float64(max(hwm-r.offset, 0)))
		}
		r.fetched(hwm >= 0 && fetchAnswered(berr), hwm)
		if !r.c.opts.End.IsZero() && (past || r.offset >= r.stopOffset) {
			return true, nil
		}
		if berr != nil && !errors.Is(berr, io.EOF) {
			if retry, err := r.fetchFailed(berr); !retry {
				return false, err
			}
		}
	}
	return false, nil
}

// position is where a session starts reading: the start position on the
// first session, where the previous one stopped on the others.
func (r *partitionReader) position(conn *kafka.Conn) (int64, error) {
	if r.offset >= 0 {
		return r.resumeAt(conn, r.offset)
	}
	at, err := r.seekStart(conn)
	if err == nil {
		r.c.mu.Lock()
		r.st.startOff, r.st.offset = at, at
		r.c.mu.Unlock()
	}
	return at, err
}

// seekStart finds the first offset at or after Start by Kafka timestamp.
// With End, it also finds the offset where reading will stop (the first
// record past End, else the end of the log), for progress.
func (r *partitionReader) seekStart(conn *kafka.Conn) (int64, error) {
	first, err := conn.ReadFirstOffset()
	if err != nil {
		return 0, fmt.Errorf("read first offset: %w", err)
	}
	if !r.c.opts.End.IsZero() {
		end, err := conn.ReadOffset(r.c.opts.End.Add(time.Millisecond))
		if err != nil {
			return 0, fmt.Errorf("read offset at %s: %w", r.c.opts.End.Format(time.RFC3339), err)
		}
		if end < 0 {
			if end, err = conn.ReadLastOffset(); err != nil {
				return 0, fmt.Errorf("read last offset: %w", err)
			}
		}
		r.c.mu.Lock()
		r.st.endOff = end
		r.c.mu.Unlock()
	}
	if r.c.opts.Start.IsZero() {
		return first, nil
	}
	off, err := conn.ReadOffset(r.c.opts.Start)
	if err != nil {
		return 0, fmt.Errorf("read offset at %s: %w", r.c.opts.Start.Format(time.RFC3339), err)
	}
	if off < 0 { // nothing at or after Start: begin at the end
		if off, err = conn.ReadLastOffset(); err != nil {
			return 0, fmt.Errorf("read last offset: %w", err)
		}
	}
	// Starting at the oldest record retained: the range may begin before it.
	r.atOldest = off <= first
	return off, nil
}

// checkOldest records that the partition's oldest retained record is
// newer than Start (by more than a second: timestamps of the same moment
// are not a gap), so the range begins before what Kafka still holds.
func (r *partitionReader) checkOldest(t time.Time) {
	if t.IsZero() || !t.After(r.c.opts.Start.Add(time.Second)) {
		return
	}
	r.c.mu.Lock()
	r.st.oldest = t
	r.c.mu.Unlock()
	r.logger.Warn("The range starts before the oldest record retained; the start is missing from this partition",
		"start", r.c.opts.Start.UTC().Format(time.RFC3339), "oldest_retained", t.UTC().Format(time.RFC3339))
}

// fetchConfig returns the fetch settings of a partition reader, with the
// defaults for what is unset.
func fetchConfig(maxWait time.Duration, minBytes, maxBytes int) kafka.ReadBatchConfig {
	c := kafka.ReadBatchConfig{MaxWait: maxWait, MinBytes: minBytes, MaxBytes: maxBytes}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.MinBytes <= 0 {
		c.MinBytes = DefaultMinBytes
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
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
