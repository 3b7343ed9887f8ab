package detect

import "fmt"

// CohortStatus is the state of the cohort's rate test, so that "not enough
// evidence yet" is visible rather than a silent OK.
type CohortStatus struct {
	Deploy         *Deploy `json:"deploy,omitempty"` // the Pretrain deploy it follows
	Testing        bool    `json:"testing"`
	Insufficient   string  `json:"insufficient_evidence,omitempty"`
	CohortErrors   int64   `json:"cohort_errors"`
	CohortRequests int64   `json:"cohort_requests"`
	ControlErrors  int64   `json:"control_errors"`
	NullRatio      float64 `json:"null_ratio,omitempty"`
	EValue         float64 `json:"e_value"`
	Threshold      float64 `json:"e_value_threshold"`
	NewTested      int     `json:"new_fingerprints_tested"`
	// Control names the train-served traffic the cohort is compared with.
	Control string `json:"control"`
	// SectionIncidents are DB sections whose train-served error or 5xx rate
	// is well above their baseline: explanations of their own, never a
	// Pretrain blame.
	SectionIncidents []SectionIncident `json:"section_incidents"`
	// Undetermined lists Pretrain-blaming signals no cause won, with the
	// candidates weighed: nothing was blamed.
	Undetermined []Undetermined `json:"undetermined"`
	// Debug is the traffic developers sent through mw-pretrain's debug
	// release: not a leak, and in no wiki's statistics.
	Debug []DebugTraffic `json:"debug_release"`
}

// CohortStatus reports the cohort test as of the last evaluated bucket.
func (d *Detector) CohortStatus() CohortStatus {
	rs := &d.cohortRate
	st := CohortStatus{Threshold: 1 / d.cfg.Alpha, Control: d.scopeName(),
		SectionIncidents: d.sectionIncidents(), Undetermined: append([]Undetermined(nil), d.undecided...), Debug: d.debugTraffic()}
	if st.SectionIncidents == nil {
		st.SectionIncidents = []SectionIncident{}
	}
	if st.Undetermined == nil {
		st.Undetermined = []Undetermined{}
	}
	if rs.anchor == 0 {
		st.Insufficient = "no Pretrain deploy seen in the window yet"
		return st
	}
	st.Deploy = &Deploy{Scope: "pretrain", At: ts(rs.anchor)}
	st.Insufficient = rs.insufficient
	st.Testing = rs.insufficient == "" && d.next-rs.anchor <= int64(d.cfg.Attribution)
	st.CohortErrors, st.CohortRequests, st.ControlErrors = rs.x, rs.rc, rs.y
	st.NullRatio, st.EValue, st.NewTested = rs.rho0, rs.ep.E(), len(rs.newTested)
	if st.Insufficient == "" && rs.x < int64(d.cfg.MinBuckets) {
		st.Insufficient = fmt.Sprintf("%d cohort errors since the deploy: too few to tell a regression from noise yet", rs.x)
	}
	return st
}
