// Package render lays out and renders what the detector's pages show: a
// finding (kind, severity, wikis, the deploy it follows, summary, evidence,
// exemplar) with an SVG plot of its cohort's and control's error rates and
// the deploy markers, the timeline of findings and deploys, and the deploy
// verdicts. The live page of the daemon (package ui) and the replay's HTML
// report (package report) both render through it, so a finding looks the
// same in both.
//
// Everything that comes from events goes through html/template, so it is
// escaped for the context it lands in; the plots are numbers computed here
// and laid out by the templates. The shared templates use no inline style
// attribute and no script, so a page can forbid both in its
// Content-Security-Policy.
package render

import (
	_ "embed"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/verdict"
)

// Deploy is one deploy marker.
type Deploy struct {
	Scope   string // "pretrain" or "train"
	Group   string
	Version string
	Source  string
	At      time.Time
}

// Finding is a finding and the per-minute series of its cohort and control.
type Finding struct {
	detect.Finding
	Plot *Plot // nil when there is none
}

// Plot is a finding's cohort and control, step by step (a minute).
type Plot struct {
	Start time.Time     // first minute
	Step  time.Duration // one minute
	// Cohort are the finding's wikis, counted in CohortScope ("pretrain"
	// for the kinds that blame Pretrain-served traffic, else "train"); the
	// control is every other wiki on the train scope.
	Cohort      []string
	CohortScope string
	// Fingerprint is the finding's error (hex), counted on the cohort;
	// empty for findings about a rate.
	Fingerprint string
	Points      []Point
}

// Point is one step of a Plot.
type Point struct {
	CohortRequests, CohortErrors   int64
	ControlRequests, ControlErrors int64
	FingerprintErrors              int64
}

//go:embed shared.html.tmpl
var shared string

// Parse returns the page template: the shared templates ("style",
// "finding", "plot", "timeline", "verdicts", "evidence") and page, which
// calls them.
func Parse(name, page string) (*template.Template, error) {
	t, err := template.New(name).Funcs(Funcs()).Parse(shared)
	if err != nil {
		return nil, fmt.Errorf("parse shared templates: %w", err)
	}
	if t, err = t.Parse(page); err != nil {
		return nil, fmt.Errorf("parse %s template: %w", name, err)
	}
	return t, nil
}

// Funcs are the templates' formatting functions.
func Funcs() template.FuncMap {
	return template.FuncMap{
		"num":   Num,
		"bytes": byteSize,
		"ts":    TimeText,
		"hm":    func(t time.Time) string { return t.UTC().Format("15:04") },
		"dur":   DurText,
		"pct":   func(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" },
		"float": FloatText,
		"join":  strings.Join,
		"first": func(n int, s []string) []string { return s[:min(n, len(s))] },
		"more":  func(n int, s []string) int { return max(0, len(s)-n) },
		"persec": func(r float64) string {
			switch {
			case r >= 1e6:
				return strconv.FormatFloat(r/1e6, 'f', 2, 64) + " M/s"
			case r >= 1e3:
				return strconv.FormatFloat(r/1e3, 'f', 1, 64) + " k/s"
			}
			return strconv.FormatFloat(r, 'f', 0, 64) + "/s"
		},
	}
}

// FindingView is a finding laid out for the "finding" template.
type FindingView struct {
	Finding
	Anchor  string          // fragment id
	Link    string          // its own page; "" where there is none (the report)
	Plot    *PlotView       // nil without a plot
	Deploy  string          // the deploy it follows, as text
	Verdict *verdict.Result // the verdict of that deploy, when known
	NoPlot  string          // why there is no plot, when the default text is wrong
}

// Findings lays out findings: fragment ids, deploy text, plots with the
// deploy markers, and the verdict of the deploy each follows. link gives a
// finding's own page (nil: none).
func Findings(fs []Finding, deploys []Deploy, verdicts []verdict.Result, link func(id string) string) []FindingView {
	out := make([]FindingView, 0, len(fs))
	for i, f := range fs {
		it := FindingView{Finding: f, Anchor: anchor(i, f.ID)}
		if link != nil {
			it.Link = link(f.ID)
		}
		if f.Deploy != nil {
			it.Deploy = DeployText(f.Deploy.Scope, f.Deploy.Group, f.Deploy.Version, f.Deploy.At)
			for j := range verdicts {
				v := &verdicts[j]
				if v.Scope == f.Deploy.Scope && v.Names(f.Deploy.Version) && (v.Scope == "pretrain" || v.Group == f.Deploy.Group) {
					it.Verdict = v
					break
				}
			}
		}
		if f.Plot != nil && len(f.Plot.Points) > 0 {
			it.Plot = layoutPlot(f, deploys)
		}
		out = append(out, it)
	}
	return out
}

// VerdictView is one row of the "verdicts" template.
type VerdictView struct {
	verdict.Result
	Class    string // CSS class of the verdict
	Findings []Link
}

// Link is a finding id and where it is shown.
type Link struct {
	ID, Href string
}

// Verdicts lays out deploy verdicts; link gives a finding's page (nil: a
// fragment of the same page).
func Verdicts(rs []verdict.Result, link func(id string) string) []VerdictView {
	out := make([]VerdictView, 0, len(rs))
	for _, r := range rs {
		v := VerdictView{Result: r, Class: "v-" + string(r.Verdict)}
		for _, id := range r.Findings {
			href := "#" + id
			if link != nil {
				href = link(id)
			}
			v.Findings = append(v.Findings, Link{ID: id, Href: href})
		}
		out = append(out, v)
	}
	return out
}

// anchor is a fragment id for finding i; IDs are hex, but a page must not
// trust that.
func anchor(i int, id string) string {
	var b strings.Builder
	for _, r := range id {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			b.WriteRune(r)
		}
	}
	return fmt.Sprintf("f%d-%s", i+1, b.String())
}

// DeployText describes a deploy in one line.
func DeployText(scope, group, version string, at time.Time) string {
	s := scope
	if group != "" {
		s += " " + group
	}
	if version != "" {
		s += " " + version
	}
	return s + " at " + at.UTC().Format("2006-01-02 15:04:05") + " UTC"
}
