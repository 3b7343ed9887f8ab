package ingest

import (
	"errors"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/event"
)

// recordHandler decodes one partition's records into its Sink and counts
// what it skips and rejects, one per partition reader.
type recordHandler struct {
	dec        *decode.Decoder
	sink       Sink
	timed      TimedSink // the sink, when it wants Kafka times; nil otherwise
	pm         *partitionMetricsHandle
	logger     *slog.Logger
	ev         event.Event
	det        event.Detail
	lastSample time.Time
	notAfter   int64 // with MaxAhead: the latest event time accepted, Unix ns; 0 = no limit
	// newest is the newest Kafka time read, Unix ns, not past notAfter (a
	// producer whose clock runs fast must not pull the watermark along).
	newest int64
	// records and bytes read since the last publish: the topic's counters
	// are shared by its partitions' goroutines, so they are added to once
	// per fetch, not once per record.
	records, bytes int
}

func newRecordHandler(dec *decode.Decoder, sink Sink, pm *partitionMetricsHandle, logger *slog.Logger) recordHandler {
	h := recordHandler{dec: dec, sink: sink, pm: pm, logger: logger}
	if ts, ok := sink.(TimedSink); ok {
		h.timed = ts
	}
	return h
}

func (r *recordHandler) handle(msg *record) {
	var kt int64 // 0: the record has no timestamp
	if !msg.Time.IsZero() {
		kt = msg.Time.UnixNano()
	}
	if r.timed != nil {
		r.timed.Record(kt)
	}
	if kt > r.newest && (r.notAfter == 0 || kt <= r.notAfter) {
		r.newest = kt
	}
	r.records++
	r.bytes += len(msg.Value)
	r.det = event.Detail{}
	err := r.dec.Decode(msg.Value, msg.Time, &r.ev, &r.det)
	switch {
	case err == nil && r.notAfter != 0 && r.ev.Time > r.notAfter:
		r.pm.reject(decode.ErrTimeRange)
		r.sample(msg, decode.ErrTimeRange)
	case err == nil:
		r.sink.Add(&r.ev, &r.det)
	case errors.Is(err, decode.ErrSkip):
		r.pm.skip(err)
	default:
		r.pm.reject(err)
		r.sample(msg, err)
	}
}

// publish adds the fetch's records and bytes to the topic's counters and
// sets its last-record gauge; once per fetch.
func (r *recordHandler) publish() {
	if r.records > 0 {
		r.pm.records.Add(float64(r.records))
		r.pm.bytes.Add(float64(r.bytes))
		r.records, r.bytes = 0, 0
	}
	if r.newest > 0 {
		r.pm.observeNewest(r.newest)
	}
}

// sample logs a rejected record at most every 10 s per partition, quoted
// and truncated: records carry user input.
func (r *recordHandler) sample(msg *record, err error) {
	now := time.Now()
	if now.Sub(r.lastSample) < 10*time.Second {
		return
	}
	r.lastSample = now
	s := string(msg.Value[:min(len(msg.Value), 256)])
	if !utf8.ValidString(s) {
		s = strconv.QuoteToASCII(s)
	}
	r.logger.Warn("Rejected record (sampled)", "reason", err.Error(), "offset", msg.Offset, "bytes", len(msg.Value), "sample", s)
}
