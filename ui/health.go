package ui

import (
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wikimedia/pretrain-detector/detect"
)

// Health is the detector's state as the page shows it. Fields a source
// does not know stay zero and are left out.
type Health struct {
	Ready    bool
	NotReady string // why not, when not ready

	Watermark time.Time // event time up to which detection ran; zero before any event
	// Simulated says the event times are a simulation's (the demo), so the
	// watermark's distance to the wall clock means nothing.
	Simulated bool
	Topics    []TopicHealth
	Cohort    *detect.CohortStatus

	FleetIncident bool
	FleetSince    time.Time
	// Incidents are other incidents that hold blame back (a DB section's,
	// for one), as their sources describe them.
	Incidents []Incident
	// Notes are further lines worth a look (a partition set aside, a
	// topic found late), one sentence each.
	Notes []string
}

// TopicHealth is one topic's partitions and lag.
type TopicHealth struct {
	Topic      string
	Partitions int   // being read
	Connected  int   // with a connection to their leader
	Stalled    int   // set aside: unreadable or behind for too long
	Missing    bool  // the topic does not exist
	Lag        int64 // records behind the high-water marks
}

// Incident is an incident under way.
type Incident struct {
	What  string
	Since time.Time
}

// TopicsFromMetrics reads each topic's partitions and lag from the ingest
// metrics (detector_ingest_partitions, _partitions_connected,
// _partitions_stalled when the ingest exports it, _topic_missing,
// _consumer_lag_records), so the page shows what /metrics says.
func TopicsFromMetrics(g prometheus.Gatherer) []TopicHealth {
	mfs, err := g.Gather()
	if err != nil {
		return nil
	}
	by := map[string]*TopicHealth{}
	for _, mf := range mfs {
		name, ok := strings.CutPrefix(mf.GetName(), "detector_ingest_")
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			topic := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "topic" {
					topic = l.GetValue()
				}
			}
			if topic == "" {
				continue
			}
			t := by[topic]
			if t == nil {
				t = &TopicHealth{Topic: topic}
				by[topic] = t
			}
			v := m.GetGauge().GetValue()
			switch name {
			case "partitions":
				t.Partitions += int(v)
			case "partitions_connected":
				t.Connected += int(v)
			case "partitions_stalled":
				t.Stalled += int(v)
			case "topic_missing":
				t.Missing = t.Missing || v > 0
			case "consumer_lag_records":
				t.Lag += int64(v)
			}
		}
	}
	out := make([]TopicHealth, 0, len(by))
	for _, t := range by {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b TopicHealth) int { return strings.Compare(a.Topic, b.Topic) })
	return out
}

// healthView is Health laid out for the page.
type healthView struct {
	Health
	Delay      time.Duration // wall clock minus the watermark
	HasDelay   bool
	Problems   int // topics missing or with partitions not read
	CohortText string
	CohortOK   bool
}

func newHealthView(h Health, now time.Time) *healthView {
	v := &healthView{Health: h}
	if !h.Watermark.IsZero() && !h.Simulated {
		v.Delay, v.HasDelay = now.Sub(h.Watermark).Round(time.Second), true
	}
	for _, t := range h.Topics {
		if t.Missing || t.Stalled > 0 || t.Connected < t.Partitions {
			v.Problems++
		}
	}
	if c := h.Cohort; c != nil {
		switch {
		case c.Insufficient != "":
			v.CohortText = "insufficient evidence: " + c.Insufficient
		case c.Testing:
			v.CohortText, v.CohortOK = "testing the cohort since the Pretrain deploy", true
		default:
			v.CohortText, v.CohortOK = "idle: the latest Pretrain deploy's attribution window is closed", true
		}
	}
	return v
}
