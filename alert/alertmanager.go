package alert

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/redact"
)

// Label names. They are the alert's identity in Alertmanager: routes, inhibit
// rules and silences match on them, so they are a contract like the kind names.
// No label name is ever derived from finding content.
const (
	labelAlertname   = "alertname"
	labelSeverity    = "severity"
	labelKind        = "kind"
	labelCohort      = "cohort"
	labelFindingID   = "finding_id"
	labelFingerprint = "fingerprint"
	labelWikis       = "wikis"
)

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

// Size bounds for values built from event content. Alertmanager keeps every
// alert in memory and copies labels into each notification, and receivers
// (IRC, e-mail, Phabricator) choke on huge fields, so nothing from a log line
// reaches it unbounded.
const (
	maxLabelValue  = 256
	maxSummary     = 1024
	maxExemplar    = 1024
	maxMessage     = 1024
	maxShortField  = 256
	maxWikisAnn    = 1024
	maxDescription = 4096
	maxURL         = 2048

	// maxWikisLabel is the largest wiki set that goes into the wikis label;
	// larger sets are in the annotation only, so the label stays short enough
	// to read and to route on.
	maxWikisLabel = 3
	// maxTopWikis bounds the per-wiki breakdown in the description.
	maxTopWikis = 10
	// maxCandidates bounds the candidate causes the description lists.
	maxCandidates = 6
)

const (
	defaultResendDelay = time.Minute
	defaultRunbookURL  = "https://wikitech.wikimedia.org/wiki/Pretrain/Detector#<kind>"
	kindPlaceholder    = "<kind>"
	findingPagePath    = "/findings/" // the finding's page on the detector (package ui)
)

// alertname is the kind's Alertmanager alertname (detect.KindFacts).
func alertname(k detect.Kind) string {
	if f, ok := k.Facts(); ok {
		return f.AlertName
	}
	// A kind this build does not know still reaches the on-call, under a
	// name that routes to the default receiver.
	return "DetectorFinding"
}

// cohort is whose code a kind blames (detect.KindFacts): routing sends
// "pretrain" to the Pretrain owners and "train" to the train conductors.
func cohort(k detect.Kind) string {
	f, _ := k.Facts()
	return f.Cohort
}

// reservedLabel reports the label names AlertFor sets; ExtraLabels may not
// use them, or an operator's setting could rewrite a finding's identity.
func reservedLabel(name string) bool {
	switch name {
	case labelAlertname, labelSeverity, labelKind, labelCohort, labelFindingID, labelFingerprint, labelWikis:
		return true
	}
	return false
}

// AlertFor maps a finding to the alert posted to Alertmanager. Labels are the
// finding's identity (they must not change while it fires, or Alertmanager
// sees a new alert); annotations carry the evidence. A firing (or pending)
// finding gets EndsAt = now + 4 × resend delay, so Alertmanager resolves it by
// itself if the detector stops resending; a resolved one gets EndsAt = its
// resolve time (now if unknown). o need not have defaults applied.
func AlertFor(f detect.Finding, o NotifierOptions, now time.Time) *models.PostableAlert {
	o = o.withDefaults()
	// Annotations go on to IRC, e-mail and Phabricator: no query string,
	// IP or user name from the raw log may reach them.
	f = redact.Finding(f)

	labels := models.LabelSet{
		labelAlertname: alertname(f.Kind),
		labelKind:      labelValue(string(f.Kind)),
		labelFindingID: labelValue(f.ID),
	}
	sev := f.Severity
	if sev == "" {
		sev = f.Kind.Severity()
	}
	labels[labelSeverity] = labelValue(sev)
	if c := cohort(f.Kind); c != "" {
		labels[labelCohort] = c
	}
	if f.Fingerprint != "" {
		labels[labelFingerprint] = labelValue(f.Fingerprint)
	}
	// A wiki set is part of the identity only where it cannot grow while the
	// finding fires (a label change would make Alertmanager see a new
	// alert): the cohort's own regressions and single-wiki anomalies. The
	// others carry their wikis in the annotations.
	if f.Kind == detect.KindWikiAnomaly || (f.Kind == detect.KindPretrainRegression && f.Fingerprint == "") {
		if w := wikisLabel(f.Wikis); w != "" {
			labels[labelWikis] = w
		}
	}
	for name, v := range o.ExtraLabels {
		// Names were validated by NewNotifier; AlertFor may be called with
		// options that were not, so it re-checks rather than emit a label
		// Alertmanager would reject with the whole batch.
		if !validLabelName(name) || reservedLabel(name) {
			continue
		}
		if v = labelValue(v); v != "" {
			labels[name] = v
		}
	}
	// Alertmanager drops empty label values; doing it here keeps what we send
	// equal to what it stores.
	for k, v := range labels {
		if v == "" {
			delete(labels, k)
		}
	}

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

	startsAt := f.StartedAt
	if startsAt.IsZero() {
		startsAt = f.DetectedAt
	}
	if startsAt.IsZero() {
		startsAt = now
	}
	var endsAt time.Time
	if f.State == detect.StateResolved {
		endsAt = now
		if f.ResolvedAt != nil && !f.ResolvedAt.IsZero() {
			endsAt = *f.ResolvedAt
		}
		// Alertmanager rejects EndsAt before StartsAt (and with it the whole
		// batch's status code), so an onset estimated after the resolve time
		// is pulled back rather than sent as is.
		if startsAt.After(endsAt) {
			startsAt = endsAt
		}
	} else {
		endsAt = now.Add(4 * o.ResendDelay)
		if startsAt.After(endsAt) {
			startsAt = now
		}
	}

	a := &models.PostableAlert{
		Annotations: ann,
		StartsAt:    strfmt.DateTime(startsAt.UTC()),
		EndsAt:      strfmt.DateTime(endsAt.UTC()),
		Alert:       models.Alert{Labels: labels},
	}
	if o.ExternalURL != "" && f.ID != "" {
		a.GeneratorURL = strfmt.URI(strings.TrimRight(o.ExternalURL, "/") + findingPagePath + url.PathEscape(f.ID))
	}
	return a
}

// labelValue cleans and bounds a label value.
func labelValue(s string) string { return redact.Clean(s, maxLabelValue, false) }

// wikisLabel is the sorted, comma-joined wiki set when it is small enough to
// be part of the identity, else "".
func wikisLabel(wikis []string) string {
	if len(wikis) == 0 {
		return ""
	}
	set := make([]string, 0, len(wikis))
	for _, w := range wikis {
		if w = redact.Clean(w, maxShortField, false); w != "" {
			set = append(set, w)
		}
	}
	slices.Sort(set)
	set = slices.Compact(set)
	if len(set) == 0 || len(set) > maxWikisLabel {
		return ""
	}
	return labelValue(strings.Join(set, ","))
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
// the test and its statistic, and whether the data could decide at all.
func description(f detect.Finding) string {
	e := f.Evidence
	var b strings.Builder
	if e.Insufficient {
		b.WriteString("Insufficient evidence: the data cannot decide whose code is at fault; nothing is blamed.\n")
	}
	if e.CohortErrors != 0 || e.CohortRequests != 0 {
		fmt.Fprintf(&b, "Cohort since onset: %s.\n", countsText(e.CohortErrors, e.CohortRequests))
	}
	if e.ControlErrors != 0 || e.ControlRequests != 0 {
		fmt.Fprintf(&b, "Control since onset: %s.\n", countsText(e.ControlErrors, e.ControlRequests))
	}
	if e.BaselineErrors != 0 || e.BaselineRequest != 0 {
		fmt.Fprintf(&b, "Cohort before onset: %s.\n", countsText(e.BaselineErrors, e.BaselineRequest))
	}
	if e.RateRatio != 0 || e.BaselineRatio != 0 || e.RateRatioLower != 0 {
		rr := num(e.RateRatio)
		if e.RateRatio == 0 && e.RateRatioLower > 0 {
			rr = "unbounded (no control errors)"
		}
		fmt.Fprintf(&b, "Rate ratio cohort/control: %s", rr)
		if e.RateRatioLower > 0 {
			fmt.Fprintf(&b, ", at least %s with 95%% confidence", num(e.RateRatioLower))
		}
		if e.BaselineRatio != 0 {
			fmt.Fprintf(&b, " (baseline ratio %s)", num(e.BaselineRatio))
		}
		b.WriteString(".\n")
	}
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
		fmt.Fprintf(&b, "Test %s", t)
		if len(stats) > 0 {
			fmt.Fprintf(&b, ": %s", strings.Join(stats, ", "))
		}
		b.WriteString(".\n")
	}
	if e.Distinct != 0 {
		fmt.Fprintf(&b, "Distinct requests: %d.\n", e.Distinct)
	}
	if len(e.TopWikis) > 0 {
		b.WriteString("Top wikis:")
		for i, w := range e.TopWikis {
			if i == maxTopWikis {
				fmt.Fprintf(&b, " (+%d more)", len(e.TopWikis)-i)
				break
			}
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, " %s %s", redact.Clean(w.Wiki, maxShortField, false), countsText(w.Errors, w.Requests))
		}
		b.WriteString(".\n")
	}
	if len(e.Versions) > 0 {
		vs := make([]string, 0, len(e.Versions))
		for _, v := range e.Versions {
			vs = append(vs, redact.Clean(v, maxShortField, false))
		}
		fmt.Fprintf(&b, "Versions: %s.\n", strings.Join(vs, ", "))
	}
	if c := redact.Clean(f.ExceptionClass, maxShortField, false); c != "" {
		fmt.Fprintf(&b, "Exception class: %s.\n", c)
	}
	if c := redact.Clean(f.Channel, maxShortField, false); c != "" {
		fmt.Fprintf(&b, "Channel: %s.\n", c)
	}
	if m := redact.Clean(f.NormalizedMessage, maxMessage, false); m != "" {
		fmt.Fprintf(&b, "Message: %s\n", m)
	}
	if n := redact.Clean(e.Note, maxMessage, false); n != "" {
		fmt.Fprintf(&b, "Note: %s\n", n)
	}
	if c := e.Code; c != nil {
		fmt.Fprintf(&b, "Code test in %s: Pretrain-served %s against train-served %s; ratio %s, 95%% [%s, %s]; %s.\n",
			redact.Clean(c.Scope, maxShortField, false), countsText(c.K, c.RP), countsText(c.N, c.RT),
			codeRatio(c), num(c.Lo), unboundedNum(c.Hi), redact.Clean(c.Verdict, maxShortField, false))
	}
	if m := redact.Clean(e.Margin, maxMessage, false); m != "" {
		fmt.Fprintf(&b, "Attribution: %s\n", m)
	}
	for i, c := range e.Candidates {
		if i == maxCandidates {
			fmt.Fprintf(&b, "(+%d more candidates)\n", len(e.Candidates)-i)
			break
		}
		fits := "does not fit"
		if c.Fits {
			fits = "fits"
		}
		fmt.Fprintf(&b, "Candidate %s %s (%s): %s\n", redact.Clean(c.Cause, maxShortField, false), redact.Clean(c.Name, maxShortField, false),
			fits, redact.Clean(c.Evidence, maxMessage, false))
	}
	return redact.Clean(strings.TrimRight(b.String(), "\n"), maxDescription, true)
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

// validLabelName is Prometheus's classic label name syntax, which every
// Alertmanager version accepts; names starting with "__" are reserved.
func validLabelName(name string) bool {
	if name == "" || strings.HasPrefix(name, "__") {
		return false
	}
	for i, r := range name {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}
