package alert

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/redact"
)

// An alert's annotations: the evidence of a finding, rendered as text for
// the people Alertmanager notifies.

// Annotation names: the evidence, free to change between sends.
const (
	annSummary        = "summary"
	annDescription    = "description"
	annWikis          = "wikis"
	annExemplar       = "exemplar"
	annMessage        = "message"
	annExceptionClass = "exception_class"
	annChannel        = "channel"
	annDeploy         = "deploy"
	annSharedData     = "shared_data"
	annStartedAt      = "started_at"
	annDetectedAt     = "detected_at"
	annResolvedAt     = "resolved_at"
	annRunbookURL     = "runbook_url"
	annDashboard      = "dashboard"
)

// alertAnnotations are the annotations of f's alert; empty values are left
// out. f has been redacted.
func alertAnnotations(f detect.Finding, o NotifierOptions) models.LabelSet {
	ann := models.LabelSet{}
	setAnn := func(k, v string) {
		if v != "" {
			ann[k] = v
		}
	}
	setAnn(annSummary, redact.Clean(f.Summary, maxSummary, false))
	setAnn(annDescription, description(f))
	setAnn(annWikis, wikisAnnotation(f.Wikis))
	setAnn(annExemplar, redact.Clean(f.Evidence.Exemplar, maxExemplar, false))
	setAnn(annMessage, redact.Clean(f.NormalizedMessage, maxMessage, false))
	setAnn(annExceptionClass, redact.Clean(f.ExceptionClass, maxShortField, false))
	setAnn(annChannel, redact.Clean(f.Channel, maxShortField, false))
	setAnn(annDeploy, deployText(f.Deploy))
	setAnn(annSharedData, sharedDataText(f.Evidence))
	setAnn(annStartedAt, timeText(f.StartedAt))
	setAnn(annDetectedAt, timeText(f.DetectedAt))
	if f.State == detect.StateResolved && f.ResolvedAt != nil {
		setAnn(annResolvedAt, timeText(*f.ResolvedAt))
	}
	setAnn(annRunbookURL, kindURL(o.RunbookURL, f.Kind))
	setAnn(annDashboard, kindURL(o.DashboardURL, f.Kind))
	return ann
}

// wikisAnnotation lists every wiki in the finding's order, cut at a bound
// with a count of what was left out.
func wikisAnnotation(wikis []string) string {
	var b strings.Builder
	for i, w := range wikis {
		w = redact.Clean(w, maxShortField, false)
		if w == "" {
			continue
		}
		// Keep room for the longest possible tail, " … (+N more)".
		if b.Len()+1+len(w) > maxWikisAnn-32 {
			fmt.Fprintf(&b, " %s (+%d more)", redact.Ellipsis, len(wikis)-i)
			break
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(w)
	}
	return b.String()
}

// description renders the evidence as text a human can check: counts, rates,
// the test and its statistic, and whether the data could decide at all. Its
// sections come in a fixed order, each line only when its data is there.
func description(f detect.Finding) string {
	e := &f.Evidence
	var b strings.Builder
	writeCounts(&b, e)
	writeTest(&b, e)
	writeBreakdown(&b, e)
	writeError(&b, f, e)
	writeAttribution(&b, e)
	return redact.Clean(strings.TrimRight(b.String(), "\n"), maxDescription, true)
}

// writeCounts writes whether the data could decide, the error counts of
// the cohort and the control since the onset and of the cohort before it,
// and the rate ratio.
func writeCounts(b *strings.Builder, e *detect.Evidence) {
	if e.Insufficient {
		b.WriteString("Insufficient evidence: the data cannot decide whose code is at fault; nothing is blamed.\n")
	}
	if e.CohortErrors != 0 || e.CohortRequests != 0 {
		fmt.Fprintf(b, "Cohort since onset: %s.\n", countsText(e.CohortErrors, e.CohortRequests))
	}
	if e.ControlErrors != 0 || e.ControlRequests != 0 {
		fmt.Fprintf(b, "Control since onset: %s.\n", countsText(e.ControlErrors, e.ControlRequests))
	}
	if e.BaselineErrors != 0 || e.BaselineRequest != 0 {
		fmt.Fprintf(b, "Cohort before onset: %s.\n", countsText(e.BaselineErrors, e.BaselineRequest))
	}
	if e.RateRatio != 0 || e.BaselineRatio != 0 || e.RateRatioLower != 0 {
		rr := num(e.RateRatio)
		if e.RateRatio == 0 && e.RateRatioLower > 0 {
			rr = "unbounded (no control errors)"
		}
		fmt.Fprintf(b, "Rate ratio cohort/control: %s", rr)
		if e.RateRatioLower > 0 {
			fmt.Fprintf(b, ", at least %s with 95%% confidence", num(e.RateRatioLower))
		}
		if e.BaselineRatio != 0 {
			fmt.Fprintf(b, " (baseline ratio %s)", num(e.BaselineRatio))
		}
		b.WriteString(".\n")
	}
}

// writeTest writes the statistical test with its statistics, and the
// number of distinct requests.
func writeTest(b *strings.Builder, e *detect.Evidence) {
	var stats []string
	if e.PValue != 0 {
		stats = append(stats, "p-value "+num(e.PValue))
	}
	if e.EValue != 0 {
		stats = append(stats, "e-value "+num(e.EValue))
	}
	if e.Alpha != 0 {
		stats = append(stats, "alpha "+num(e.Alpha))
	}
	if t := redact.Clean(e.Test, maxShortField, false); t != "" || len(stats) > 0 {
		if t == "" {
			t = "unnamed"
		}
		fmt.Fprintf(b, "Test %s", t)
		if len(stats) > 0 {
			fmt.Fprintf(b, ": %s", strings.Join(stats, ", "))
		}
		b.WriteString(".\n")
	}
	if e.Distinct != 0 {
		fmt.Fprintf(b, "Distinct requests: %d.\n", e.Distinct)
	}
}

// writeBreakdown writes the wikis with the most errors, bounded, and the
// versions involved.
func writeBreakdown(b *strings.Builder, e *detect.Evidence) {
	if len(e.TopWikis) > 0 {
		b.WriteString("Top wikis:")
		for i, w := range e.TopWikis {
			if i == maxTopWikis {
				fmt.Fprintf(b, " (+%d more)", len(e.TopWikis)-i)
				break
			}
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, " %s %s", redact.Clean(w.Wiki, maxShortField, false), countsText(w.Errors, w.Requests))
		}
		b.WriteString(".\n")
	}
	if len(e.Versions) > 0 {
		vs := make([]string, 0, len(e.Versions))
		for _, v := range e.Versions {
			vs = append(vs, redact.Clean(v, maxShortField, false))
		}
		fmt.Fprintf(b, "Versions: %s.\n", strings.Join(vs, ", "))
	}
}

// writeError writes what the error is (exception class, channel, message)
// and the detector's note on it.
func writeError(b *strings.Builder, f detect.Finding, e *detect.Evidence) {
	if c := redact.Clean(f.ExceptionClass, maxShortField, false); c != "" {
		fmt.Fprintf(b, "Exception class: %s.\n", c)
	}
	if c := redact.Clean(f.Channel, maxShortField, false); c != "" {
		fmt.Fprintf(b, "Channel: %s.\n", c)
	}
	if m := redact.Clean(f.NormalizedMessage, maxMessage, false); m != "" {
		fmt.Fprintf(b, "Message: %s\n", m)
	}
	if n := redact.Clean(e.Note, maxMessage, false); n != "" {
		fmt.Fprintf(b, "Note: %s\n", n)
	}
}

// writeAttribution writes whose code is blamed and why: the code test,
// the attribution margin and the candidate causes, bounded.
func writeAttribution(b *strings.Builder, e *detect.Evidence) {
	if c := e.Code; c != nil {
		fmt.Fprintf(b, "Code test in %s: Pretrain-served %s against train-served %s; ratio %s, 95%% [%s, %s]; %s.\n",
			redact.Clean(c.Scope, maxShortField, false), countsText(c.K, c.RP), countsText(c.N, c.RT),
			codeRatio(c), num(c.Lo), unboundedNum(c.Hi), redact.Clean(c.Verdict, maxShortField, false))
	}
	if m := redact.Clean(e.Margin, maxMessage, false); m != "" {
		fmt.Fprintf(b, "Attribution: %s\n", m)
	}
	for i, c := range e.Candidates {
		if i == maxCandidates {
			fmt.Fprintf(b, "(+%d more candidates)\n", len(e.Candidates)-i)
			break
		}
		fits := "does not fit"
		if c.Fits {
			fits = "fits"
		}
		fmt.Fprintf(b, "Candidate %s %s (%s): %s\n", redact.Clean(c.Cause, maxShortField, false), redact.Clean(c.Name, maxShortField, false),
			fits, redact.Clean(c.Evidence, maxMessage, false))
	}
}

// unboundedNum is num, with 0 read as unbounded: the code test's JSON
// writes an infinite ratio or bound as 0.
func unboundedNum(v float64) string {
	if v == 0 {
		return "unbounded"
	}
	return num(v)
}

// codeRatio is the code test's ratio, unbounded when only Pretrain-served
// requests logged the error.
func codeRatio(c *detect.CodeTest) string {
	if c.N == 0 && c.K > 0 {
		return "unbounded"
	}
	return num(c.Ratio)
}

// countsText renders "E errors / R requests (P%)"; requests and the rate are
// left out for signals that have no request denominator.
func countsText(errs, reqs int64) string {
	if reqs <= 0 {
		return strconv.FormatInt(errs, 10) + " errors"
	}
	return fmt.Sprintf("%d errors / %d requests (%s%%)", errs, reqs, num(100*float64(errs)/float64(reqs)))
}

// num formats a statistic with enough digits to compare, in a form that
// survives NaN and infinities from degenerate tests.
func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// deployText renders "pretrain 1.47.0-alpha at <RFC 3339>", with the train
// group and the source of the deploy record when known.
func deployText(d *detect.Deploy) string {
	if d == nil {
		return ""
	}
	parts := []string{redact.Clean(d.Scope, maxShortField, false)}
	if g := redact.Clean(d.Group, maxShortField, false); g != "" {
		parts = append(parts, g)
	}
	parts = append(parts, redact.Clean(d.Version, maxShortField, false))
	s := strings.Join(slices.DeleteFunc(parts, func(p string) bool { return p == "" }), " ")
	if !d.At.IsZero() {
		s += " at " + timeText(d.At)
	}
	if src := redact.Clean(d.Source, maxShortField, false); src != "" {
		s += " (" + src + ")"
	}
	return redact.Clean(s, maxMessage, false)
}

// sharedDataText names the shared-data class and the frame or channel that
// implicates it.
func sharedDataText(e detect.Evidence) string {
	class := redact.Clean(e.SharedData, maxShortField, false)
	frame := redact.Clean(e.Frame, maxMessage, false)
	switch {
	case class != "" && frame != "":
		return redact.Clean(class+" via "+frame, maxMessage, false)
	case frame != "":
		return "via " + frame
	default:
		return class
	}
}

// timeText renders t in RFC 3339, UTC; "" for the zero time, so that an
// unknown time leaves its annotation out.
func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// kindURL substitutes the kind into a runbook or dashboard URL template.
func kindURL(tmpl string, k detect.Kind) string {
	if tmpl == "" {
		return ""
	}
	return redact.Clean(strings.ReplaceAll(tmpl, kindPlaceholder, url.PathEscape(string(k))), maxURL, false)
}
