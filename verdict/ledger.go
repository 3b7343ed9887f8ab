package verdict

import (
	"slices"
	"sync"

	"github.com/wikimedia/pretrain-detector/detect"
)

// Ledger remembers verdicts so that they do not change as the window moves
// on. The counts before a deploy are read at the first judgement once the
// watermark passed it, while the ring certainly holds them; a closed
// window's pass or insufficient-evidence is judged once, at the first
// judgement after it closed; a fail stays a fail after its finding is
// dropped from the detector's list. Only a finding can change a closed
// verdict, into fail. Judge it often (every evaluation in a replay, every
// few seconds in the daemon), so that no count leaves the ring unread. It
// is safe for concurrent use.
type Ledger struct {
	cfg Config

	mu     sync.Mutex
	closed map[string]Result   // by Deploy.Key: evidence verdicts of closed windows
	blamed map[string][]string // by Deploy.Key: ids of findings that blamed it
	before map[string]Counts   // by Deploy.Key: the counts before it
}

// NewLedger returns an empty ledger.
func NewLedger(cfg Config) *Ledger {
	return &Ledger{cfg: cfg, closed: map[string]Result{}, blamed: map[string][]string{}, before: map[string]Counts{}}
}

// Config returns the configuration the ledger judges with.
func (l *Ledger) Config() Config { return l.cfg }

// Judge returns the verdict of every deploy of the timeline (any order),
// newest first. Deploys no longer in the timeline are forgotten.
func (l *Ledger) Judge(deploys []Deploy, findings []detect.Finding, src Source) []Result {
	timeline := Timeline(deploys)
	l.mu.Lock()
	defer l.mu.Unlock()
	keep := make(map[string]bool, len(timeline))
	wm := src.Watermark()
	out := make([]Result, 0, len(timeline))
	for _, d := range timeline {
		k := d.Key()
		keep[k] = true
		ids := Blamed(timeline, d, findings)
		ids = append(ids, l.blamed[k]...)
		slices.Sort(ids)
		ids = slices.Compact(ids)
		if len(ids) > 0 {
			l.blamed[k] = ids
		}
		var before *Counts
		if b, ok := l.before[k]; ok {
			before = &b
		} else if !wm.Before(d.At) {
			if b, ok := Before(d, src, l.cfg); ok {
				l.before[k] = b
				before = &b
			}
		}
		var r Result
		if c, ok := l.closed[k]; ok && c.At.Equal(d.At) {
			r = c
			r.Aliases = d.Aliases
		} else {
			r = judge(timeline, d, nil, src, l.cfg, before)
			if r.Verdict != Pending {
				l.closed[k] = r
			}
		}
		if len(ids) > 0 {
			r = failed(r, ids)
		}
		r.Findings = append([]string{}, ids...)
		out = append(out, r)
	}
	for k := range l.closed {
		if !keep[k] {
			delete(l.closed, k)
		}
	}
	for k := range l.blamed {
		if !keep[k] {
			delete(l.blamed, k)
		}
	}
	for k := range l.before {
		if !keep[k] {
			delete(l.before, k)
		}
	}
	slices.SortStableFunc(out, func(a, b Result) int { return b.At.Compare(a.At) })
	return out
}

// failed turns r into a fail: the evidence counts stay, as they were read.
func failed(r Result, ids []string) Result {
	r.Verdict = Fail
	r.Evidence.Reason = failReason(len(ids))
	return r
}

func failReason(n int) string {
	if n == 1 {
		return "a finding blaming this deploy fired"
	}
	return "findings blaming this deploy fired"
}
