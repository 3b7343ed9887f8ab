// Package report writes the replay report: one self-contained HTML file
// (no script, no external CSS, fonts or images; a Content-Security-Policy
// that forbids loading anything) with the replayed range, its inputs, a
// timeline of the findings and deploys, the verdict of every deploy, and
// per finding an SVG plot of its cohort's and control's error rates around
// the onset, its evidence and exemplar; and its JSON summary. Findings,
// plots and verdicts are rendered by package render, as on the daemon's
// live page.
package report

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/redact"
	"github.com/wikimedia/pretrain-detector/render"
	"github.com/wikimedia/pretrain-detector/verdict"
)

// Data is what the report shows.
type Data struct {
	Title    string // default "Detector replay"
	Version  string // the detector's version, shown in the footer
	From, To time.Time
	Start    time.Time // where every partition started (the warm-up)
	Elapsed  time.Duration
	Inputs   []Input
	Records  int64
	Rejected int64
	Skipped  int64
	Events   int64
	Findings []Finding // in the order they fired
	Deploys  []Deploy
	// Warnings are what the reader must know to trust the result (a
	// configured topic that does not exist, a range that starts before the
	// oldest retained record), shown under the title.
	Warnings []string
	// Verdicts are the deploys' verdicts as of the end of the replay,
	// newest first.
	Verdicts []verdict.Result
}

// Input is one topic that was read.
type Input struct {
	Cluster, Topic, Format string
	Partitions             int
	Records, Bytes         int64
	Rejected, Skipped      int64
}

// The report's findings, plots and deploys are the shared renderer's.
type (
	Deploy  = render.Deploy
	Finding = render.Finding
	Plot    = render.Plot
	Point   = render.Point
)

//go:embed report.html.tmpl
var pageTemplate string

// Write renders d as HTML to w.
func Write(w io.Writer, d Data) error {
	t, err := render.Parse("report", pageTemplate)
	if err != nil {
		return fmt.Errorf("report template: %w", err)
	}
	// The report is shared beyond those who may read the raw logs: the
	// text taken from log messages goes out redacted (package redact).
	d.Findings = slices.Clone(d.Findings)
	for i := range d.Findings {
		d.Findings[i].Finding = redact.Finding(d.Findings[i].Finding)
	}
	if err := t.Execute(w, newView(d)); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

// view is the template's data: d plus everything laid out.
type view struct {
	Data
	Kinds    []kindCount
	Timeline render.TimelineView
	Items    []render.FindingView
	Verdicts []render.VerdictView
	Rate     float64 // events per second of wall time
}

type kindCount struct {
	Kind     string
	Severity string
	N        int
}

func newView(d Data) view {
	if d.Title == "" {
		d.Title = "Detector replay"
	}
	v := view{Data: d}
	if d.Elapsed > 0 {
		v.Rate = float64(d.Events) / d.Elapsed.Seconds()
	}
	counts := map[detect.Kind]int{}
	for _, f := range d.Findings {
		counts[f.Kind]++
	}
	for _, k := range detect.Kinds {
		if counts[k] > 0 {
			v.Kinds = append(v.Kinds, kindCount{Kind: string(k), Severity: k.Severity(), N: counts[k]})
		}
	}
	v.Items = render.Findings(d.Findings, d.Deploys, d.Verdicts, nil)
	// Verdict rows link to the findings' sections of this file.
	anchors := map[string]string{}
	for _, it := range v.Items {
		anchors[it.ID] = "#" + it.Anchor
	}
	v.Verdicts = render.Verdicts(d.Verdicts, func(id string) string {
		if a, ok := anchors[id]; ok {
			return a
		}
		return "#"
	})
	v.Timeline = render.Timeline(d.Start, d.From, d.To, d.Deploys, v.Items)
	v.Timeline.Label = "Findings and deploys over the replayed range"
	v.Timeline.WarmUpLabel = "warm-up: findings detected here are not reported"
	return v
}

// Summary is the report's JSON form: what the replay read and found, and
// every deploy's verdict, so that "what did that build do?" is one jq
// query away.
type Summary struct {
	From     time.Time        `json:"from"`
	To       time.Time        `json:"to"`
	Start    time.Time        `json:"warm_up_from"`
	Records  int64            `json:"records"`
	Rejected int64            `json:"rejected"`
	Skipped  int64            `json:"skipped"`
	Events   int64            `json:"events"`
	Kinds    map[string]int   `json:"findings_by_kind"`
	Findings []SummaryFinding `json:"findings"`
	Deploys  []verdict.Result `json:"deploys"`
}

// SummaryFinding is one finding of the summary: the JSONL line's headline.
type SummaryFinding struct {
	ID         string         `json:"id"`
	Kind       detect.Kind    `json:"kind"`
	Severity   string         `json:"severity"`
	State      detect.State   `json:"state"`
	Summary    string         `json:"summary"`
	Wikis      int            `json:"wikis"`
	DetectedAt time.Time      `json:"detected_at"`
	Deploy     *detect.Deploy `json:"deploy,omitempty"`
}

// NewSummary returns d's summary.
func NewSummary(d Data) Summary {
	s := Summary{From: d.From, To: d.To, Start: d.Start, Records: d.Records, Rejected: d.Rejected, Skipped: d.Skipped,
		Events: d.Events, Kinds: map[string]int{}, Findings: []SummaryFinding{}, Deploys: []verdict.Result{}}
	for _, f := range d.Findings {
		s.Kinds[string(f.Kind)]++
		s.Findings = append(s.Findings, SummaryFinding{ID: f.ID, Kind: f.Kind, Severity: f.Severity, State: f.State,
			Summary: f.Summary, Wikis: len(f.Wikis), DetectedAt: f.DetectedAt, Deploy: f.Deploy})
	}
	s.Deploys = append(s.Deploys, d.Verdicts...)
	return s
}

// WriteSummary writes d's summary as indented JSON.
func WriteSummary(w io.Writer, d Data) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(NewSummary(d)); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}
