package replay

import (
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/ingest"
)

// replaySink is one partition's ingest.TimedSink during a replay. It runs
// on the partition's goroutine: it cuts the records into steps by Kafka
// time and hands the decoded events to the merge once per Kafka batch.
type replaySink struct {
	r       *Replay
	credits chan struct{} // batches this partition may have waiting for the merge
	step    int64         // step of the newest timed record; never decreases
	cur     *chunk
	records int64 // read since the last hand-over
}

var _ ingest.TimedSink = (*replaySink)(nil)

func (r *Replay) newSink() ingest.Sink {
	s := &replaySink{
		r:       r,
		credits: make(chan struct{}, replayCredits),
		// Records without a timestamp before the first timed one, and
		// records older than the start, belong to the first step.
		step: floorDiv(r.Start().UnixNano(), r.bw),
	}
	for range replayCredits {
		s.credits <- struct{}{}
	}
	s.cur = r.getChunk(s)
	return s
}

// Record opens a new step when the record's Kafka time is past the current
// one. An older record stays in the current step: the cut depends on the
// partition's records alone, not on timing.
func (s *replaySink) Record(kafkaTime int64) {
	s.records++
	if kafkaTime <= 0 {
		return
	}
	if st := floorDiv(kafkaTime, s.r.bw); st > s.step {
		s.step = st
		c := s.cur
		c.segs = append(c.segs, segment{step: st, req0: len(c.reqs), err0: len(c.errs)})
	}
}

// Add buffers a decoded event. An error's Detail points into the record or
// the decoder's scratch space, so what the window may keep is copied.
func (s *replaySink) Add(ev *event.Event, d *event.Detail) {
	c := s.cur
	if len(c.segs) == 0 {
		c.segs = append(c.segs, segment{step: s.step, req0: len(c.reqs), err0: len(c.errs)})
	}
	if ev.Kind != event.KindError {
		c.reqs = append(c.reqs, *ev)
		return
	}
	e := replayErr{ev: *ev}
	var dd event.Detail
	if d != nil {
		dd = *d
	}
	start := len(c.arena)
	for i, f := range [numReplayText][]byte{dd.Message, dd.Exemplar, dd.Class, dd.Channel, dd.File, dd.Frame, dd.Trace, dd.ReqID} {
		e.offs[i] = uint32(len(c.arena))
		c.arena = append(c.arena, f[:min(len(f), replayTextCap)]...)
	}
	e.offs[numReplayText] = uint32(len(c.arena))
	e.req = xxhash.Sum64(c.arena[e.offs[rtReqID]:e.offs[numReplayText]])
	e.text = xxhash.Sum64(c.arena[start:e.offs[rtReqID]])
	c.errs = append(c.errs, e)
}

// Flush hands the batch's events to the merge. It blocks while the
// partition has replayCredits batches waiting: after a Kafka batch, never
// inside one, so that no fetch times out while it waits.
func (s *replaySink) Flush() {
	if s.records > 0 {
		s.send(s.step)
	}
}

// Done tells the merge that the partition has nothing more.
func (s *replaySink) Done() { s.send(doneStep) }

func (s *replaySink) send(next int64) {
	c := s.cur
	c.next = next
	s.r.records.Add(s.records)
	s.records = 0
	select {
	case <-s.credits:
	case <-s.r.ctx.Done():
		return
	}
	select {
	case s.r.in <- c:
	case <-s.r.ctx.Done():
		return
	}
	s.cur = s.r.getChunk(s)
}

// getChunk returns an empty chunk, recycled when possible.
func (r *Replay) getChunk(s *replaySink) *chunk {
	c, ok := r.chunks.Get().(*chunk)
	if !ok {
		c = &chunk{}
	}
	c.sink = s
	return c
}

// putChunk recycles c, keeping its buffers unless a burst grew them large.
func (r *Replay) putChunk(c *chunk) {
	const keep = 4 << 20
	if cap(c.arena) > keep || cap(c.reqs)*int(unsafe.Sizeof(event.Event{})) > keep {
		return
	}
	*c = chunk{segs: c.segs[:0], reqs: c.reqs[:0], errs: c.errs[:0], arena: c.arena[:0]}
	r.chunks.Put(c)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
