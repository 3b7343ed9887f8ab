package alert

import (
	"net/url"
	"slices"
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
	kindPlaceholder = "<kind>"
	findingPagePath = "/findings/" // the finding's page on the detector (package ui)
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
	startsAt, endsAt := alertTimes(f, o.ResendDelay, now)
	a := &models.PostableAlert{
		Annotations: alertAnnotations(f, o),
		StartsAt:    strfmt.DateTime(startsAt.UTC()),
		EndsAt:      strfmt.DateTime(endsAt.UTC()),
		Alert:       models.Alert{Labels: alertLabels(f, o.ExtraLabels)},
	}
	if o.ExternalURL != "" && f.ID != "" {
		a.GeneratorURL = strfmt.URI(strings.TrimRight(o.ExternalURL, "/") + findingPagePath + url.PathEscape(f.ID))
	}
	return a
}

// alertLabels are the labels of f's alert: its identity, and the extra
// labels that do not collide with it. f has been redacted.
func alertLabels(f detect.Finding, extra map[string]string) models.LabelSet {
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
	for name, v := range extra {
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
	return labels
}

// alertTimes are the alert's StartsAt and EndsAt (see AlertFor): StartsAt
// is the estimated onset, else the detection, else now.
func alertTimes(f detect.Finding, resendDelay time.Duration, now time.Time) (startsAt, endsAt time.Time) {
	startsAt = f.StartedAt
	if startsAt.IsZero() {
		startsAt = f.DetectedAt
	}
	if startsAt.IsZero() {
		startsAt = now
	}
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
		endsAt = now.Add(4 * resendDelay)
		if startsAt.After(endsAt) {
			startsAt = now
		}
	}
	return startsAt, endsAt
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
