package replay

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/internal/rateplot"
	"github.com/wikimedia/pretrain-detector/window"
)

// merge is the replay's single writer to the window and owner of the
// detector (see Replay).
type merge struct {
	r     *Replay
	w     *window.Writer
	parts int // partitions Discover found: the merge waits to hear from all

	state map[*replaySink]*partState
	k     int64 // the step being merged; doneStep once every partition is done
	begun bool

	errs    []errRef // errors of steps ≤ k not yet applied
	release []*chunk // chunks fully applied, recycled after the errors
	applied int64    // events applied since the last evaluation

	lastWM  int64 // watermark of the last evaluation; 0 before the first
	idle    int   // buckets evaluated since events were last applied
	maxIdle int

	from     int64
	index    map[string]int // finding ID → position in findings
	findings []detect.Finding
	plots    *rateplot.Recorder
	verdicts *verdicts // nil unless Options.Verdicts
	sinkErr  error     // the sink's first error
}

// partState is what the merge knows of one partition.
type partState struct {
	queue []*chunk // received, not fully applied; queue[0] from segment seg on
	seg   int
	next  int64 // every later record of the partition is in a step ≥ next
}

// errConsumerStopped: the consumer returned while a partition had not
// said it was done (its context ended).
var errConsumerStopped = errors.New("the consumer stopped before every partition was read")

type errRef struct {
	c *chunk
	i int32
}

func newMerge(r *Replay, parts int) *merge {
	m := &merge{
		r: r, w: r.st.Store.NewWriter(), parts: parts, state: map[*replaySink]*partState{},
		from: r.opts.From.UnixNano(), index: map[string]int{},
	}
	// After this many buckets without events nothing can fire or resolve
	// any more (every trailing window of detect has emptied), so a longer
	// gap in the data is evaluated in one call rather than bucket by bucket.
	length := time.Duration(r.st.Config.Window.Length) + time.Duration(r.st.Config.Detect.ResolveAfter) + time.Duration(r.st.Config.Window.Lateness)
	m.maxIdle = int(int64(length)/r.bw) + 2
	if r.opts.Plots {
		m.plots = rateplot.NewRecorder(r.st.Store, r.opts.Wikis, r.Start().UnixNano(), r.opts.To.UnixNano())
	}
	if r.opts.Verdicts {
		m.verdicts = newVerdicts(r.st)
	}
	return m
}

// run merges until every partition is done, then evaluates what is left.
func (m *merge) run(ctx context.Context, consumerDone <-chan struct{}) error {
	for {
		if err := m.await(ctx, consumerDone); err != nil {
			return err
		}
		if !m.begun {
			m.k, m.begun = m.lowest(), true
			if m.k == doneStep {
				return nil // not one record in the range
			}
			for _, st := range m.state {
				m.applyUpTo(st)
			}
			continue // wait again: every partition must be past the first step
		}
		m.closeStep()
		nk := m.lowest()
		if nk == doneStep {
			m.finish()
			return nil
		}
		m.evaluateTo(nk*m.r.bw - m.r.lateness) // the steps in between had no records
		m.k = nk
		for _, st := range m.state {
			m.applyUpTo(st)
		}
	}
}

// await receives chunks until every partition is past step k (before the
// first step: until every partition has said where it starts).
func (m *merge) await(ctx context.Context, consumerDone <-chan struct{}) error {
	for !m.ready() {
		select {
		case c := <-m.r.in:
			m.receive(c)
		case <-consumerDone:
			// Every partition goroutine has returned, so every chunk is in
			// the channel. A partition still missing was never started.
			for {
				select {
				case c := <-m.r.in:
					m.receive(c)
					continue
				default:
				}
				break
			}
			if !m.ready() {
				m.parts = len(m.state)
				if !m.ready() {
					return errConsumerStopped
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (m *merge) ready() bool {
	if len(m.state) < m.parts {
		return false
	}
	if !m.begun {
		return true
	}
	for _, st := range m.state {
		if st.next <= m.k {
			return false
		}
	}
	return true
}

func (m *merge) receive(c *chunk) {
	st := m.state[c.sink]
	if st == nil {
		st = &partState{}
		m.state[c.sink] = st
	}
	st.queue = append(st.queue, c)
	st.next = c.next
	if m.begun {
		m.applyUpTo(st)
	}
}

// lowest is the first step any partition still has records in.
func (m *merge) lowest() int64 {
	low := int64(doneStep)
	for _, st := range m.state {
		s := st.next
		for i, q := range st.queue {
			j := 0
			if i == 0 {
				j = st.seg
			}
			if j < len(q.segs) {
				s = q.segs[j].step
				break
			}
		}
		low = min(low, s)
	}
	return low
}

// applyUpTo applies a partition's requests of steps ≤ k and sets its errors
// aside for the end of the step.
func (m *merge) applyUpTo(st *partState) {
	for len(st.queue) > 0 {
		c := st.queue[0]
		for st.seg < len(c.segs) && c.segs[st.seg].step <= m.k {
			seg := c.segs[st.seg]
			req1, err1 := c.segEnd(st.seg)
			for i := seg.req0; i < req1; i++ {
				m.w.Add(&c.reqs[i], nil)
			}
			for i := seg.err0; i < err1; i++ {
				m.errs = append(m.errs, errRef{c, int32(i)})
			}
			m.applied += int64(req1-seg.req0) + int64(err1-seg.err0)
			st.seg++
		}
		if st.seg < len(c.segs) {
			return // the rest is for later steps
		}
		st.queue = st.queue[1:]
		st.seg = 0
		// The partition may read on at once: a step can span more Kafka
		// batches than it has credits. The chunk itself is recycled after
		// the step, as its errors still point into it.
		c.sink.credits <- struct{}{}
		m.release = append(m.release, c)
	}
}

// closeStep applies the step's errors in their canonical order, makes
// everything visible and evaluates the step.
func (m *merge) closeStep() {
	slices.SortFunc(m.errs, func(a, b errRef) int {
		x, y := &a.c.errs[a.i], &b.c.errs[b.i]
		return cmp.Or(cmp.Compare(x.ev.Time, y.ev.Time), cmp.Compare(x.ev.Fingerprint, y.ev.Fingerprint),
			cmp.Compare(x.ev.Wiki, y.ev.Wiki), cmp.Compare(x.ev.Scope, y.ev.Scope),
			cmp.Compare(x.req, y.req), cmp.Compare(x.text, y.text))
	})
	for _, e := range m.errs {
		x := &e.c.errs[e.i]
		d := e.c.detail(x)
		m.w.Add(&x.ev, &d)
	}
	clear(m.errs)
	m.errs = m.errs[:0]
	if m.applied > 0 {
		m.w.Flush()
		m.r.st.Store.Sync()
		m.r.events.Add(m.applied)
		m.applied, m.idle = 0, 0
	}
	for _, c := range m.release {
		m.r.putChunk(c)
	}
	clear(m.release)
	m.release = m.release[:0]
	m.evaluateTo((m.k+1)*m.r.bw - m.r.lateness)
}

// finish evaluates what is left: the records are final, so the watermark
// moves to the newest event (as far as To), nothing later will come.
func (m *merge) finish() {
	newest := m.r.st.Store.Newest()
	if newest == 0 {
		return
	}
	m.evaluateTo(min(newest+m.r.bw, m.r.opts.To.UnixNano()))
}

// evaluateTo evaluates up to wm one bucket at a time, as the live daemon
// would, so that a finding that fires and resolves between two calls is
// seen firing; past maxIdle buckets without events the rest is one call.
func (m *merge) evaluateTo(wm int64) {
	if wm <= m.lastWM {
		return
	}
	if m.lastWM != 0 {
		for m.lastWM+m.r.bw < wm && m.idle < m.maxIdle {
			m.evaluate(m.lastWM + m.r.bw)
		}
	}
	m.evaluate(wm)
}

func (m *merge) evaluate(wm int64) {
	m.lastWM = wm
	m.idle++
	changed := m.r.st.Detector.Evaluate(wm)
	m.r.pos.Store(wm + m.r.lateness)
	var out []detect.Finding
	for _, f := range changed {
		i, ok := m.index[f.ID]
		if !ok {
			if f.State != detect.StateFiring || f.DetectedAt.UnixNano() < m.from {
				continue // the warm-up's, or never fired
			}
			i = len(m.findings)
			m.index[f.ID] = i
			m.findings = append(m.findings, f)
			if m.plots != nil {
				m.plots.Add(f)
			}
		}
		m.findings[i] = f
		out = append(out, f)
	}
	if m.plots != nil {
		m.plots.Fill(wm)
	}
	m.verdicts.judge()
	if m.r.opts.Sink != nil {
		if err := m.r.opts.Sink.Notify(out, m.findings); err != nil && m.sinkErr == nil {
			m.sinkErr = err
		}
	}
}

// reported returns the findings reported, in the order they first fired.
func (m *merge) reported() []detect.Finding { return slices.Clone(m.findings) }
