package replay

import (
	"math"

	"github.com/wikimedia/pretrain-detector/event"
)

// chunk is what a sink hands the merge after a Kafka batch: the events of
// one or more steps, in the partition's order, requests and errors apart.
type chunk struct {
	sink  *replaySink
	segs  []segment
	reqs  []event.Event
	errs  []replayErr
	arena []byte
	// next is the sink's step after this chunk: every later record of the
	// partition is in a step ≥ next. doneStep when the partition is done.
	next int64
}

// segment starts the events of one step at reqs[req0:] and errs[err0:].
type segment struct {
	step       int64
	req0, err0 int
}

// replayErr is an error event with its Detail copied into the chunk's arena
// and the hashes that make its order canonical.
type replayErr struct {
	ev        event.Event
	req, text uint64
	offs      [numReplayText + 1]uint32
}

// Detail fields a replayed error keeps, in arena order.
const (
	rtMessage = iota
	rtExemplar
	rtClass
	rtChannel
	rtFile
	rtFrame
	rtTrace
	rtReqID
	numReplayText
)

const (
	noStep   = math.MinInt64 // before a partition's first timed record
	doneStep = math.MaxInt64 // a finished partition: past every step
)

func (c *chunk) segEnd(i int) (req1, err1 int) {
	if i+1 < len(c.segs) {
		return c.segs[i+1].req0, c.segs[i+1].err0
	}
	return len(c.reqs), len(c.errs)
}

func (c *chunk) detail(e *replayErr) event.Detail {
	f := func(i int) []byte { return c.arena[e.offs[i]:e.offs[i+1]:e.offs[i+1]] }
	return event.Detail{
		Message: f(rtMessage), Exemplar: f(rtExemplar), Class: f(rtClass), Channel: f(rtChannel),
		File: f(rtFile), Frame: f(rtFrame), Trace: f(rtTrace), ReqID: f(rtReqID),
	}
}
