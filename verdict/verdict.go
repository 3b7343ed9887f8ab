// Package verdict judges every deploy the way a canary analysis does: did
// this Pretrain build or train deploy hurt the wikis, did it not, or can
// the traffic not tell yet? It is what `GET /api/v1/deploys/{version}` and
// `detector verdict` answer, and what the replay report lists per deploy.
//
// The rules, for one deploy d of the timeline (the first sighting of each
// version or rollout; the state the window started in is not a deploy; a
// Pretrain marker within window.DefaultRolloutMerge of a rollout is the
// same deploy, see Timeline):
//
//   - fail: a finding that blames d fired (firing or resolved). For a
//     Pretrain deploy the blaming kinds are pretrain-regression,
//     shared-data-spillover and pretrain-leak; for a train deploy,
//     train-regression of d's group. A finding names the deploy it follows
//     (scope, group, version); a pretrain-leak, which names none, blames the
//     latest Pretrain deploy at or before its onset. Fail is decided as soon
//     as the finding fires, window open or not, and never taken back.
//   - pending: d's attribution window is still open: the watermark has not
//     passed min(d + detect.attribution, the next deploy of the same series)
//     (the next Pretrain deploy, or the next train deploy of d's group; the
//     detector blames the latest deploy, so a newer one closes d's window).
//   - pass: the window closed and the counts rule out a regression of at
//     least detect.margin at level detect.alpha. The quantity is the
//     difference in differences the detector tests: ψ = (cohort/control
//     error-rate ratio after d) / (the same before d), whose cohort is the
//     Pretrain cohort on Pretrain-served traffic for a Pretrain deploy, and
//     the wikis of d's train group for a train deploy; the control is every
//     other train-served wiki. ψ = A/B with A the cohort's own
//     after/before rate ratio and B the control's; with the exact
//     (Clopper–Pearson, conditional binomial) bounds A ≤ Aᵤ and B ≥ Bₗ, each
//     at one-sided level alpha/2, ψ ≤ Aᵤ/Bₗ holds with probability at least
//     1 − alpha (union bound). Pass when Aᵤ/Bₗ < margin.
//   - insufficient-evidence: the window closed without a finding but
//     without that bound either: too few cohort errors or requests, less
//     than detect.min_pre_period of data before the deploy, or counts that
//     left the window before they could be read.
//
// "Before" is [d − 2·min_pre_period, d), as the detector's own pre-period,
// and "after" is the attribution window. A pass says the rate did not rise
// by the margin; it cannot rule out a spillover through errors new to
// other wikis, which only the detector's fingerprint rules see, so a
// finding that fires later for an onset inside the window still turns a
// pass into fail.
package verdict

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/window"
)

// Verdict is a deploy's judgement.
type Verdict string

const (
	Pass         Verdict = "pass"
	Fail         Verdict = "fail"
	Insufficient Verdict = "insufficient-evidence"
	Pending      Verdict = "pending"
)

// Verdicts lists every verdict.
var Verdicts = []Verdict{Pass, Fail, Insufficient, Pending}

// Deploy is one deploy of the timeline. Version is what findings'
// deploy.version carries: the rollout for Pretrain, the mwversion (or the
// marker's version) for the train.
type Deploy struct {
	Scope   string    `json:"scope"` // "pretrain" or "train"
	Group   string    `json:"group,omitempty"`
	Version string    `json:"version"`
	At      time.Time `json:"at"`
	Source  string    `json:"source,omitempty"`
	// Aliases are the other versions the same Pretrain deploy showed up
	// under: a marker posted for a rollout the events show (Timeline).
	Aliases []string `json:"aliases,omitempty"`
}

// Names reports whether version names d.
func (d Deploy) Names(version string) bool {
	return d.Version == version || slices.Contains(d.Aliases, version)
}

// Config is the part of the detector's configuration the verdicts use.
type Config struct {
	Alpha        float64       // detect.alpha: the level of a pass
	Margin       float64       // detect.margin: the smallest regression worth ruling out
	Attribution  time.Duration // detect.attribution
	MinPrePeriod time.Duration // detect.min_pre_period
}

// Counts are a cohort's and its control's errors and requests over
// [From, To).
type Counts struct {
	From            time.Time `json:"from"`
	To              time.Time `json:"to"`
	CohortErrors    int64     `json:"cohort_errors"`
	CohortRequests  int64     `json:"cohort_requests"`
	ControlErrors   int64     `json:"control_errors"`
	ControlRequests int64     `json:"control_requests"`
}

// Evidence is what a verdict rests on.
type Evidence struct {
	Reason    string    `json:"reason"`     // one sentence
	WindowEnd time.Time `json:"window_end"` // when the attribution window closes (closed)
	Cohort    string    `json:"cohort,omitempty"`
	Before    *Counts   `json:"before,omitempty"`
	After     *Counts   `json:"after,omitempty"`
	// RatioChange is the estimate of ψ, RatioChangeUpper its upper bound at
	// level Alpha; 0 when undefined or unbounded (JSON has no infinity),
	// and Reason says which.
	RatioChange      float64 `json:"rate_ratio_change,omitempty"`
	RatioChangeUpper float64 `json:"rate_ratio_change_upper,omitempty"`
	Margin           float64 `json:"margin"`
	Alpha            float64 `json:"alpha"`
}

// Result is one deploy's verdict: the object of GET /api/v1/deploys/{version}.
type Result struct {
	Deploy
	Verdict  Verdict  `json:"verdict"`
	Findings []string `json:"findings"` // ids of the findings that blame the deploy
	Evidence Evidence `json:"evidence"`
}

// Source gives the counts a verdict rests on, as of now.
type Source interface {
	// Watermark is the event time up to which the counts are complete.
	Watermark() time.Time
	// DataStart is the oldest event time the counts still cover: the later
	// of the window's oldest bucket and the first data it received.
	DataStart() time.Time
	// Counts sums the deploy's cohort and control over [from, to).
	Counts(d Deploy, from, to time.Time) Counts
	// Cohort names the deploy's cohort for people ("testwiki, Pretrain-served").
	Cohort(d Deploy) string
}

// Key identifies a deploy: a version is deployed once per series, and a
// train version once per group.
func (d Deploy) Key() string { return d.Scope + "\x00" + d.Group + "\x00" + d.Version }

// series is what a newer deploy replaces: Pretrain as a whole, or one
// train group.
func (d Deploy) series() string {
	if d.Scope == "pretrain" {
		return "pretrain"
	}
	return "train\x00" + d.Group
}

// Timeline orders deploys by time and makes each deploy one entry: of
// the same key (a train marker for a version the events also show) the
// first is kept; Pretrain deploys within window.DefaultRolloutMerge of the
// first of them (a marker posted for a rollout, the window's own rule for
// rollouts) are one deploy, the first, with the others' versions as
// Aliases.
func Timeline(ds []Deploy) []Deploy {
	out := slices.Clone(ds)
	slices.SortStableFunc(out, func(a, b Deploy) int { return a.At.Compare(b.At) })
	seen := map[string]bool{}
	var pretrain = -1 // index in merged of the Pretrain deploy others may join
	merged := out[:0]
	for _, d := range out {
		if seen[d.Key()] {
			continue
		}
		seen[d.Key()] = true
		if d.Scope == "pretrain" {
			if pretrain >= 0 && d.At.Sub(merged[pretrain].At) < window.DefaultRolloutMerge {
				if !merged[pretrain].Names(d.Version) {
					merged[pretrain].Aliases = append(slices.Clone(merged[pretrain].Aliases), d.Version)
				}
				continue
			}
			pretrain = len(merged)
		}
		merged = append(merged, d)
	}
	return merged
}

// WindowEnd is when d's attribution window closes: after the attribution
// length, or at the next deploy of its series, whichever comes first.
// timeline must be ordered (Timeline).
func WindowEnd(timeline []Deploy, d Deploy, attribution time.Duration) time.Time {
	end := d.At.Add(attribution)
	for _, n := range timeline {
		if n.series() == d.series() && n.At.After(d.At) {
			if n.At.Before(end) {
				end = n.At
			}
			break
		}
	}
	return end
}

// Blamed returns the ids of the fired findings that blame d, sorted.
// timeline (ordered) attributes findings that name no deploy.
func Blamed(timeline []Deploy, d Deploy, findings []detect.Finding) []string {
	var ids []string
	for _, f := range findings {
		if f.State != detect.StateFiring && f.State != detect.StateResolved {
			continue
		}
		if blames(timeline, f, d) {
			ids = append(ids, f.ID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

func blames(timeline []Deploy, f detect.Finding, d Deploy) bool {
	switch d.Scope {
	case "pretrain":
		if !f.Kind.BlamesPretrain() {
			return false
		}
	case "train":
		if f.Kind != detect.KindTrainRegression {
			return false
		}
	default:
		return false
	}
	if f.Deploy != nil {
		return f.Deploy.Scope == d.Scope && d.Names(f.Deploy.Version) && (d.Scope == "pretrain" || f.Deploy.Group == d.Group)
	}
	if d.Scope != "pretrain" {
		return false
	}
	// A finding that names no deploy (pretrain-leak) blames the Pretrain
	// deploy it follows.
	onset := f.StartedAt
	if onset.IsZero() || onset.After(f.DetectedAt) {
		onset = f.DetectedAt
	}
	var latest *Deploy
	for i := range timeline {
		if timeline[i].Scope == "pretrain" && !timeline[i].At.After(onset) {
			latest = &timeline[i]
		}
	}
	return latest != nil && latest.Key() == d.Key()
}

// Judge returns the verdict of d, one of the deploys of timeline (ordered),
// from the findings and the counts src holds now.
func Judge(timeline []Deploy, d Deploy, findings []detect.Finding, src Source, cfg Config) Result {
	return judge(timeline, d, findings, src, cfg, nil)
}

// judge is Judge with the counts before the deploy read earlier, when
// before is not nil.
func judge(timeline []Deploy, d Deploy, findings []detect.Finding, src Source, cfg Config, before *Counts) Result {
	r := Result{Deploy: d, Findings: Blamed(timeline, d, findings)}
	r.Evidence = Evidence{WindowEnd: WindowEnd(timeline, d, cfg.Attribution), Margin: cfg.Margin, Alpha: cfg.Alpha, Cohort: src.Cohort(d)}
	if len(r.Findings) > 0 {
		r.Verdict = Fail
		r.Evidence.Reason = failReason(len(r.Findings))
		return r
	}
	if src.Watermark().Before(r.Evidence.WindowEnd) {
		r.Verdict = Pending
		r.Evidence.Reason = fmt.Sprintf("the attribution window is open until %s (event time)", r.Evidence.WindowEnd.UTC().Format(time.RFC3339))
		return r
	}
	evidence(&r, src, cfg, before)
	return r
}

// Before reads the counts before d: [d − 2·min_pre_period, d), from the
// oldest data held if that is later. ok is false when the window holds
// nothing from before d.
func Before(d Deploy, src Source, cfg Config) (c Counts, ok bool) {
	start := src.DataStart()
	if start.IsZero() || !start.Before(d.At) {
		return Counts{}, false
	}
	return src.Counts(d, later(d.At.Add(-2*cfg.MinPrePeriod), start), d.At), true
}

// evidence decides pass or insufficient-evidence for a closed window;
// before, when not nil, are the counts before the deploy read earlier.
func evidence(r *Result, src Source, cfg Config, before *Counts) {
	d, e := r.Deploy, &r.Evidence
	r.Verdict = Insufficient
	start := src.DataStart()
	if start.IsZero() || start.After(d.At) {
		e.Reason = "the window holds no data from the deploy's time any more"
		return
	}
	if !e.WindowEnd.After(d.At) {
		e.Reason = "the attribution window is empty"
		return
	}
	if before == nil {
		b, ok := Before(d, src, cfg)
		if !ok {
			e.Reason = "the window holds no data from before the deploy"
			return
		}
		before = &b
	}
	after := src.Counts(d, d.At, e.WindowEnd)
	e.Before, e.After = before, &after
	if pre := d.At.Sub(before.From); pre < cfg.MinPrePeriod {
		e.Reason = fmt.Sprintf("only %s of data before the deploy; %s needed", pre, cfg.MinPrePeriod)
		return
	}
	if before.CohortRequests == 0 || after.CohortRequests == 0 || before.ControlRequests == 0 || after.ControlRequests == 0 {
		e.Reason = "no cohort or control requests before or after the deploy"
		return
	}
	psi, upper := Bound(*before, after, cfg.Alpha)
	e.RatioChange, e.RatioChangeUpper = finite(psi), finite(upper)
	switch {
	case upper < cfg.Margin:
		r.Verdict = Pass
		e.Reason = fmt.Sprintf("no finding blamed it, and the cohort/control error-rate ratio rose by at most %s× (%.3g%% confidence), below the margin %g×",
			ratioText(upper), 100*(1-cfg.Alpha), cfg.Margin)
	case math.IsInf(upper, 1) || math.IsNaN(upper):
		e.Reason = fmt.Sprintf("no finding blamed it, but %d cohort errors before and %d after bound nothing: too little traffic to rule out a regression of %g×",
			before.CohortErrors, after.CohortErrors, cfg.Margin)
	default:
		e.Reason = fmt.Sprintf("no finding blamed it, but the ratio may have risen by up to %s× (%.3g%% confidence), not below the margin %g×: too little traffic to rule out a regression",
			ratioText(upper), 100*(1-cfg.Alpha), cfg.Margin)
	}
}

// Bound returns the estimate of ψ = (cohort/control ratio after) / (the
// same before) and its exact upper bound at level alpha (union of two
// one-sided alpha/2 bounds, see the package documentation). The bound is
// +Inf when the cohort had no errors before or the control none after.
func Bound(before, after Counts, alpha float64) (psi, upper float64) {
	xa, xb := after.CohortErrors, before.CohortErrors
	ra, rb := float64(after.CohortRequests), float64(before.CohortRequests)
	ya, yb := after.ControlErrors, before.ControlErrors
	qa, qb := float64(after.ControlRequests), float64(before.ControlRequests)
	// RateRatioCI is two-sided at conf: each tail is (1 − conf)/2 = alpha/2.
	_, aHi := detect.RateRatioCI(xa, xb, ra, rb, 1-alpha)
	bLo, _ := detect.RateRatioCI(ya, yb, qa, qb, 1-alpha)
	psi = math.NaN()
	if xb > 0 && ya > 0 && yb > 0 {
		psi = (float64(xa) / ra / (float64(xb) / rb)) / (float64(ya) / qa / (float64(yb) / qb))
	}
	if bLo <= 0 {
		return psi, math.Inf(1)
	}
	return psi, aHi / bLo
}

// JudgeAll returns the verdict of every deploy of the timeline, newest first.
func JudgeAll(timeline []Deploy, findings []detect.Finding, src Source, cfg Config) []Result {
	out := make([]Result, 0, len(timeline))
	for _, d := range timeline {
		out = append(out, Judge(timeline, d, findings, src, cfg))
	}
	slices.SortStableFunc(out, func(a, b Result) int { return cmp.Compare(b.At.UnixNano(), a.At.UnixNano()) })
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func finite(f float64) float64 {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0
	}
	return f
}

func ratioText(f float64) string {
	return fmt.Sprintf("%.3g", f)
}
