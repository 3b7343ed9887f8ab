package verdict

import (
	"strings"
	"sync"
	"time"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// FromWindow converts the window's deploy timeline, leaving out the
// initial state of each series (not a deploy).
func FromWindow(ds []window.Deploy) []Deploy {
	out := make([]Deploy, 0, len(ds))
	for _, d := range ds {
		if d.Initial {
			continue
		}
		out = append(out, Deploy{Scope: d.Scope.String(), Group: d.Group, Version: d.Version, At: time.Unix(0, d.At).UTC(), Source: d.Source})
	}
	return out
}

// WindowSource reads a verdict's counts from the event-time window, with
// the detector's cohort and control: for a Pretrain deploy the cohort's
// Pretrain-served traffic against every other wiki's train-served traffic;
// for a train deploy the train-served traffic of the group's wikis against
// the other wikis' (the Pretrain cohort in neither).
type WindowSource struct {
	store  *window.Store
	wikis  *wikimap.Map
	cohort []wikimap.ID
	names  string

	mu        sync.Mutex
	dataStart int64 // first bucket with requests, once found
	buf       []window.Counts
}

// NewWindowSource reads from store; cohort are the Pretrain cohort's dbnames
// (unknown ones are left out: the configuration was validated at start).
func NewWindowSource(store *window.Store, wikis *wikimap.Map, cohort []string) *WindowSource {
	s := &WindowSource{store: store, wikis: wikis}
	var names []string
	for _, n := range cohort {
		if id := wikis.ByNameString(n); id != 0 {
			s.cohort = append(s.cohort, id)
			names = append(names, n)
		}
	}
	s.names = strings.Join(names, ", ")
	return s
}

// Watermark implements Source.
func (s *WindowSource) Watermark() time.Time {
	wm := s.store.Watermark()
	if wm <= 0 {
		return time.Time{}
	}
	return time.Unix(0, wm).UTC()
}

// DataStart implements Source: the oldest bucket of the ring, or the first
// bucket that received requests if that is later (a window still filling
// up holds nothing before it). The first such bucket is searched once.
func (s *WindowSource) DataStart() time.Time {
	oldest := s.store.Oldest()
	if oldest == 0 {
		return time.Time{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dataStart == 0 {
		bw, end := s.store.BucketWidth(), s.store.Watermark()
		for b := oldest; b < end; b += bw {
			s.buf = s.store.SumWikis(event.ScopeTrain, b, b+bw, s.buf[:0])
			if total(s.buf).Requests > 0 {
				s.dataStart = b
				break
			}
		}
		if s.dataStart == 0 {
			return time.Time{}
		}
	}
	return time.Unix(0, max(oldest, s.dataStart)).UTC()
}

// Cohort implements Source.
func (s *WindowSource) Cohort(d Deploy) string {
	if d.Scope == "pretrain" {
		return s.names + ", Pretrain-served"
	}
	if d.Group == "" {
		return "every train-served wiki"
	}
	return d.Group + " wikis, train-served"
}

// Counts implements Source.
func (s *WindowSource) Counts(d Deploy, from, to time.Time) Counts {
	c := Counts{From: from.UTC(), To: to.UTC()}
	f, t := from.UnixNano(), to.UnixNano()
	train := s.store.SumWikis(event.ScopeTrain, f, t, nil)
	inCohort := make([]bool, len(train))
	for _, id := range s.cohort {
		inCohort[id] = true
	}
	switch {
	case d.Scope == "pretrain":
		pre := s.store.SumWikis(event.ScopePretrain, f, t, nil)
		for _, id := range s.cohort {
			c.CohortErrors += pre[id].Errors
			c.CohortRequests += pre[id].Requests
		}
		for id := 1; id < len(train); id++ {
			if !inCohort[id] {
				c.ControlErrors += train[id].Errors
				c.ControlRequests += train[id].Requests
			}
		}
	default:
		inGroup := make([]bool, len(train))
		for _, id := range s.wikis.InGroup(d.Group) {
			inGroup[id] = true
		}
		for id := 1; id < len(train); id++ {
			switch {
			case inCohort[id]:
			case inGroup[id] || d.Group == "":
				c.CohortErrors += train[id].Errors
				c.CohortRequests += train[id].Requests
			default:
				c.ControlErrors += train[id].Errors
				c.ControlRequests += train[id].Requests
			}
		}
	}
	return c
}

func total(cs []window.Counts) window.Counts {
	var t window.Counts
	for _, c := range cs {
		t.Requests += c.Requests
		t.Errors += c.Errors
	}
	return t
}
