package ingest

import (
	"bufio"
	"io"
	"time"
	_ "unsafe" // go:linkname

	"github.com/segmentio/kafka-go"
)

// Reading a fetch without allocating per record.
//
// kafka-go offers two ways to read a Batch: ReadMessage, which allocates a
// new key and a new value for every record (at 1.6 KB an access-log record
// and a million records a second, that garbage is most of what a replay
// costs), and Read, which copies the value into the caller's buffer but
// drops the record's offset check and its timestamp. The detector needs
// the timestamp of every record: it is the watermark's clock, the replay's
// step, and the access log's sub-second time. Both methods are thin
// wrappers over the Batch's unexported readMessage, which takes one
// callback for the key and one for the value and returns the offset and
// the timestamp; batchReader calls it directly, with callbacks that skip
// the key and copy the value into one reused buffer.
//
// This reaches into kafka-go's internals, which is why go.mod pins its
// version and TestBatchReaderMatchesReadMessage reads the same fetches
// both ways (several record batches per fetch, a fetch starting inside a
// record batch, compressed batches, headers, null values): a kafka-go
// release that changes the method fails that test, never silently. A
// response cut by MaxBytes (which kfake never sends) is tested on the
// callbacks (TestBatchReaderCut).

//go:linkname batchReadMessage github.com/segmentio/kafka-go.(*Batch).readMessage
func batchReadMessage(b *kafka.Batch, key, val func(*bufio.Reader, int, int) (int, error)) (offset, timestamp int64, headers []kafka.Header, err error)

// errShortRead is kafka-go's sentinel for a record cut by the end of the
// fetch response (Kafka truncates a response at MaxBytes, mid-batch). A
// value callback must return this very error for the Batch to end cleanly
// at the cut, as its own callbacks do; any other error breaks the batch.
//
//go:linkname errShortRead github.com/segmentio/kafka-go.errShortRead
var errShortRead error

// record is one record read from a Batch. Value is valid until the next
// read.
type record struct {
	Offset int64
	Time   time.Time // zero when the record has none
	Value  []byte    // nil for a null or empty value, as Message.Value
}

// batchReader reads records from Batches into one reused value buffer. One
// per partition reader; not safe for concurrent use.
type batchReader struct {
	buf     []byte
	null    bool
	skipKey func(*bufio.Reader, int, int) (int, error)
	intoBuf func(*bufio.Reader, int, int) (int, error)
}

const (
	// initialBatchBuffer fits every access-log and MediaWiki record of
	// ordinary size; a larger value grows the buffer.
	initialBatchBuffer = 64 << 10
	// maxKeptBuffer: after a value larger than this, the buffer shrinks
	// back to initialBatchBuffer.
	maxKeptBuffer = 4 << 20
)

func newBatchReader() *batchReader {
	br := &batchReader{buf: make([]byte, 0, initialBatchBuffer)}
	br.skipKey = func(r *bufio.Reader, size, n int) (int, error) {
		if n < 0 {
			return size, nil
		}
		return discard(r, size, n)
	}
	br.intoBuf = func(r *bufio.Reader, size, n int) (int, error) {
		if n <= 0 { // null, or empty: ReadMessage gives nil for both
			br.null = true
			return size, nil
		}
		if n > size { // cut by the end of the response: the Batch ends here
			return size, errShortRead
		}
		if n > cap(br.buf) {
			br.buf = make([]byte, n)
		}
		br.buf = br.buf[:n]
		if m, err := io.ReadFull(r, br.buf); err != nil {
			return size - m, err
		}
		return size - n, nil
	}
	return br
}

// discard skips n bytes of the size left in the response, as kafka-go's
// discardN: a key cut by the end of the response ends the Batch at the cut
// (errShortRead) instead of reading past the response, which would wait
// for bytes that never come until the fetch's deadline.
func discard(r *bufio.Reader, size, n int) (int, error) {
	if n > size {
		d, err := r.Discard(size)
		if err == nil {
			err = errShortRead
		}
		return size - d, err
	}
	d, err := r.Discard(n)
	return size - d, err
}

// next reads the batch's next record at or after offset from (a fetch
// returns whole record batches, so it may begin before the offset asked
// for; those records are skipped, as Batch.ReadMessage skips them). Its
// errors are the Batch's: io.EOF at its end.
func (br *batchReader) next(b *kafka.Batch, from int64) (record, error) {
	if cap(br.buf) > maxKeptBuffer {
		br.buf = make([]byte, 0, initialBatchBuffer)
	}
	for {
		br.null = false
		off, ts, _, err := batchReadMessage(b, br.skipKey, br.intoBuf)
		if err != nil {
			return record{}, err
		}
		if off < from {
			continue
		}
		rec := record{Offset: off, Value: br.buf}
		if br.null {
			rec.Value = nil
		}
		if ts > 0 { // as kafka-go's Message.Time
			rec.Time = time.Unix(ts/1000, (ts%1000)*int64(time.Millisecond)).UTC()
		}
		return rec, nil
	}
}
