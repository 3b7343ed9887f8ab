package detect

import (
	"time"

	"github.com/wikimedia/pretrain-detector/event"
)

// Kind is a finding kind. The names are a contract: the findings JSONL, the alerts and the API use them.
type Kind string

const (
	KindPretrainRegression  Kind = "pretrain-regression"
	KindSharedDataSpillover Kind = "shared-data-spillover"
	KindPretrainLeak        Kind = "pretrain-leak"
	KindTrainRegression     Kind = "train-regression"
	KindWikiAnomaly         Kind = "wiki-anomaly"
)

// Kinds lists every finding kind.
var Kinds = []Kind{KindPretrainRegression, KindSharedDataSpillover, KindPretrainLeak, KindTrainRegression, KindWikiAnomaly}

// KindFacts are the fixed facts of a finding kind. kindFacts is their one
// table: detect, the alerts, the page and the scenario suite read them
// from here instead of keeping switches of their own.
type KindFacts struct {
	Severity string // critical, warning or info
	// BlamesPretrain says whether the kind blames Pretrain's code: the
	// mistake that costs most when wrong.
	BlamesPretrain bool
	AlertName      string // the Alertmanager alertname
	Cohort         string // whose code it speaks of, the alert's cohort label: pretrain, train or wiki
	// PlotScope is the scope whose requests a finding's plot counts for its
	// wikis: Pretrain-served for the kinds about what mw-pretrain served,
	// train-served for the others (the control is always train-served).
	PlotScope event.Scope
}

var kindFacts = map[Kind]KindFacts{
	KindPretrainRegression:  {Severity: "warning", BlamesPretrain: true, AlertName: "PretrainRegression", Cohort: "pretrain", PlotScope: event.ScopePretrain},
	KindSharedDataSpillover: {Severity: "critical", BlamesPretrain: true, AlertName: "PretrainSharedDataSpillover", Cohort: "pretrain", PlotScope: event.ScopeTrain},
	KindPretrainLeak:        {Severity: "critical", BlamesPretrain: true, AlertName: "PretrainLeak", Cohort: "pretrain", PlotScope: event.ScopePretrain},
	KindTrainRegression:     {Severity: "warning", AlertName: "TrainRegression", Cohort: "train", PlotScope: event.ScopeTrain},
	KindWikiAnomaly:         {Severity: "info", AlertName: "WikiAnomaly", Cohort: "wiki", PlotScope: event.ScopeTrain},
}

// Facts returns the kind's facts; ok is false for a kind this build does
// not know (a finding read back from a newer build's JSONL).
func (k Kind) Facts() (f KindFacts, ok bool) {
	f, ok = kindFacts[k]
	return f, ok
}

// Severity returns the kind's fixed severity; warning for an unknown kind.
func (k Kind) Severity() string {
	if f, ok := k.Facts(); ok {
		return f.Severity
	}
	return "warning"
}

// BlamesPretrain says whether a finding of this kind blames Pretrain's
// code: the mistake that costs most when wrong.
func (k Kind) BlamesPretrain() bool {
	f, _ := k.Facts()
	return f.BlamesPretrain
}

// State is where a finding is in its lifecycle.
type State string

const (
	StatePending  State = "pending"
	StateFiring   State = "firing"
	StateResolved State = "resolved"
)

// Deploy is a deploy a finding follows.
type Deploy struct {
	Scope   string    `json:"scope"`
	Group   string    `json:"group,omitempty"`
	Version string    `json:"version"`
	At      time.Time `json:"at"`
	Source  string    `json:"source,omitempty"`
}

// WikiCount is one wiki's share of a finding's errors.
type WikiCount struct {
	Wiki     string `json:"wiki"`
	Errors   int64  `json:"errors"`
	Requests int64  `json:"requests,omitempty"`
}

// Evidence is what a finding rests on; a human should be able to check it.
type Evidence struct {
	Test            string      `json:"test"`                        // which test decided
	CohortErrors    int64       `json:"cohort_errors"`               // since onset
	CohortRequests  int64       `json:"cohort_requests"`             // since onset
	ControlErrors   int64       `json:"control_errors"`              // since onset
	ControlRequests int64       `json:"control_requests"`            // since onset
	BaselineErrors  int64       `json:"baseline_errors"`             // cohort, before onset
	BaselineRequest int64       `json:"baseline_requests"`           // cohort, before onset
	BaselineRatio   float64     `json:"baseline_ratio"`              // rho0: the cohort/control rate ratio tested against
	RateRatio       float64     `json:"rate_ratio"`                  // observed cohort/control rate ratio
	RateRatioLower  float64     `json:"rate_ratio_lower,omitempty"`  // its exact 95% lower confidence bound: finite even when no control errors make the ratio unbounded
	PValue          float64     `json:"p_value"`                     // exact one-sided p-value, when a fixed test applies
	EValue          float64     `json:"e_value,omitempty"`           // sequential mixture likelihood ratio
	Alpha           float64     `json:"alpha"`                       // level after multiplicity control
	Distinct        int64       `json:"distinct_requests,omitempty"` // distinct units, for the burst guard
	TopWikis        []WikiCount `json:"top_wikis,omitempty"`
	Versions        []string    `json:"versions,omitempty"`    // mwversions carried by the erroring events
	SharedData      string      `json:"shared_data,omitempty"` // shared-data class
	Frame           string      `json:"frame,omitempty"`       // the channel or frame that implicates shared data
	Exemplar        string      `json:"exemplar,omitempty"`
	Insufficient    bool        `json:"insufficient_evidence,omitempty"`
	Note            string      `json:"note,omitempty"`
	// Attribution: the code test (Pretrain-served against train-served
	// per-request rates in the same shared-data scope), the candidate
	// causes weighed, and by how much the chosen one wins.
	Code       *CodeTest   `json:"code_test,omitempty"`
	Candidates []Candidate `json:"candidates,omitempty"`
	Margin     string      `json:"attribution_margin,omitempty"`
}

// Finding is one detected condition with its evidence. Its JSON form is the
// findings JSONL contract.
type Finding struct {
	ID                string     `json:"id"`
	Kind              Kind       `json:"kind"`
	Severity          string     `json:"severity"`
	State             State      `json:"state"`
	Summary           string     `json:"summary"`
	Wikis             []string   `json:"wikis"`
	StartedAt         time.Time  `json:"started_at"`
	DetectedAt        time.Time  `json:"detected_at"`
	ResolvedAt        *time.Time `json:"resolved_at,omitempty"`
	NormalizedMessage string     `json:"normalized_message,omitempty"`
	ExceptionClass    string     `json:"exception_class,omitempty"`
	Channel           string     `json:"channel,omitempty"`
	Fingerprint       string     `json:"fingerprint,omitempty"` // hex
	Deploy            *Deploy    `json:"deploy,omitempty"`
	Evidence          Evidence   `json:"evidence"`
}
