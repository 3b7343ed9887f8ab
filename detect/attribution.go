package detect

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// Code tests. Timing and place never suffice to blame Pretrain: a database
// incident on the cohort's section, or a train deploy to group0, produce
// both. What only Pretrain's code explains is harm that depends on which
// code served the request, so every Pretrain-blaming rule compares the
// per-request error rate of Pretrain-served traffic with that of
// train-served traffic in the same shared-data scope.

// Verdicts of a code test.
const (
	VerdictPretrainWorse  = "pretrain-worse"  // Pretrain-served errs more: a contained Pretrain regression
	VerdictPretrainSpared = "pretrain-spared" // train-served errs, Pretrain-served does not: a spillover
	VerdictCodeAgnostic   = "code-agnostic"   // both alike: infrastructure, never a blame
	VerdictUndetermined   = "undetermined"    // too little Pretrain-served traffic to tell
)

// codeLevel is the level of the code test. It is a necessary condition on
// top of a rule's own test (an intersection of tests: the false-blame rate
// is at most the smaller level), so it need not share the family's alpha.
const codeLevel = 0.01

// CodeTest compares the per-request rates of Pretrain-served (K errors in
// RP requests) and train-served (N errors in RT requests) traffic of one
// scope with the exact conditional binomial test.
type CodeTest struct {
	Scope string  `json:"scope"`
	K     int64   `json:"pretrain_errors"`
	RP    int64   `json:"pretrain_requests"`
	N     int64   `json:"train_errors"`
	RT    int64   `json:"train_requests"`
	Ratio float64 `json:"ratio"`       // Pretrain/train per-request ratio; 0 when unbounded (no train-served errors)
	Lo    float64 `json:"ratio_lower"` // exact 95% two-sided bounds
	Hi    float64 `json:"ratio_upper"` // 0 when unbounded
	// PWorse is P(X ≥ K) under ratio = margin: small means Pretrain-served
	// errs more than margin × train-served. PSpared is P(X ≤ K) under
	// ratio = 1/margin: small means Pretrain-served errs less than
	// train-served / margin, which an infrastructure fault hitting both
	// alike does not do even with testwiki's request mix a little off the
	// section's.
	PWorse   float64 `json:"p_pretrain_worse"`
	PSpared  float64 `json:"p_pretrain_spared"`
	Expected float64 `json:"expected_pretrain_errors"` // K expected were the rates equal
	Verdict  string  `json:"verdict"`
}

func codeTest(scope string, k, rp, n, rt int64, margin float64) (c CodeTest) {
	c = CodeTest{Scope: scope, K: k, RP: rp, N: n, RT: rt, PWorse: 1, PSpared: 1, Verdict: VerdictUndetermined}
	if rp <= 0 || rt <= 0 {
		return c
	}
	c.Ratio = ratio(float64(k), float64(rp), float64(n), float64(rt))
	c.Lo, c.Hi = RateRatioCI(k, n, float64(rp), float64(rt), 0.95)
	c.Expected = float64(n) * float64(rp) / float64(rt)
	tot := k + n
	if tot > 0 {
		pw := binomialNullShare(float64(rp), float64(rt), margin)
		c.PWorse = BinomialUpperTail(k, tot, pw)
		ps := binomialNullShare(float64(rp), float64(rt), 1/margin)
		// P(X ≤ k | tot, ps) = P(tot−X ≥ tot−k | tot, 1−ps).
		c.PSpared = 1.0
		if k < tot {
			c.PSpared = BinomialUpperTail(tot-k, tot, 1-ps)
		}
	}
	defer func() {
		// JSON has no infinity: an unbounded ratio or bound is 0.
		c.Ratio, c.Hi = finite(c.Ratio), finite(c.Hi)
	}()
	switch {
	case c.PWorse <= codeLevel:
		c.Verdict = VerdictPretrainWorse
	case c.PSpared <= codeLevel:
		c.Verdict = VerdictPretrainSpared
	case c.Lo > 0 && c.Lo >= 1/margin/2 && c.Hi <= margin*2:
		// Both bounds within a factor of about 3 of 1: the effect hits
		// both codes alike.
		c.Verdict = VerdictCodeAgnostic
	}
	return c
}

func (c CodeTest) String() string {
	if c.RP <= 0 || c.RT <= 0 {
		return fmt.Sprintf("code test on %s: no traffic to compare (%s)", c.Scope, c.Verdict)
	}
	return fmt.Sprintf("code test on %s: Pretrain-served %d errors in %d requests, train-served %d in %d; Pretrain/train ratio %s (95%% %s–%s; %.1f expected at equal rates): %s",
		c.Scope, c.K, c.RP, c.N, c.RT, fmtRatio(c.Ratio), fmtRatio(c.Lo), fmtRatio(c.Hi), c.Expected, c.Verdict)
}

// Candidate is one explanation a finding's attribution weighed.
type Candidate struct {
	Cause    string     `json:"cause"` // "pretrain-deploy", "train-deploy", "section-incident", "fleet-incident"
	Name     string     `json:"name"`  // the deploy or the section
	At       *time.Time `json:"at,omitempty"`
	Evidence string     `json:"evidence"`
	Fits     bool       `json:"fits"` // whether the evidence is consistent with it
}

// SectionIncident is a DB section whose train-served error or 5xx rate is
// well above its own baseline: infrastructure until the code test says
// otherwise, never a Pretrain blame.
type SectionIncident struct {
	Section     string    `json:"section"`
	Since       time.Time `json:"since"`
	ErrorFactor float64   `json:"error_factor"` // erroring requests / baseline, last 30 s
	Status5xx   float64   `json:"status_5xx_factor"`
	// Code is the cohort's Pretrain-served traffic against the section's
	// train-served traffic since the incident began, when the cohort is in
	// the section: code-agnostic says both scopes rose alike.
	Code *CodeTest `json:"code_test,omitempty"`
}

// Undetermined is a Pretrain-blaming signal no cause won: status lists it
// with its candidates instead of a finding.
type Undetermined struct {
	Kind       Kind        `json:"kind"`
	Key        string      `json:"key"`
	At         time.Time   `json:"at"`
	Reason     string      `json:"reason"`
	Candidates []Candidate `json:"candidates"`
}

// DebugTraffic is traffic through mw-pretrain's debug release: developers
// choosing Pretrain on purpose, in no wiki's statistics.
type DebugTraffic struct {
	Wiki     string    `json:"wiki"`
	Requests int64     `json:"requests"`
	Errors   int64     `json:"errors"`
	Last     time.Time `json:"last"`
}

// undetermined records an undecided Pretrain-blaming signal for status,
// keeping the newest per key and at most maxUndetermined.
func (d *Detector) undetermined(kind Kind, key string, at int64, reason string, cands []Candidate) {
	for i := range d.undecided {
		if d.undecided[i].Kind == kind && d.undecided[i].Key == key {
			d.undecided[i] = Undetermined{Kind: kind, Key: key, At: ts(at), Reason: reason, Candidates: cands}
			return
		}
	}
	if len(d.undecided) >= maxUndetermined {
		d.undecided = d.undecided[1:]
	}
	d.undecided = append(d.undecided, Undetermined{Kind: kind, Key: key, At: ts(at), Reason: reason, Candidates: cands})
}

const maxUndetermined = 20

// pruneUndetermined forgets undecided signals older than the attribution
// window.
func (d *Detector) pruneUndetermined(now int64) {
	keep := d.undecided[:0]
	for _, u := range d.undecided {
		if now-u.At.UnixNano() <= int64(d.cfg.Attribution) {
			keep = append(keep, u)
		}
	}
	d.undecided = keep
}

// candidates lists the causes an onset at `at` on the wikis of set could
// have: the Pretrain deploy the rule follows, train deploys of groups with
// wikis in set within the attribution window, section incidents on those
// wikis and a fleet-wide incident.
func (d *Detector) candidates(dep *window.Deploy, code *CodeTest, set wikiSet, at int64) []Candidate {
	var out []Candidate
	if dep != nil {
		c := Candidate{Cause: "pretrain-deploy", Name: "Pretrain " + dep.Version, At: ptrTime(dep.At)}
		if code != nil {
			c.Evidence = code.String()
			c.Fits = code.Verdict == VerdictPretrainWorse || code.Verdict == VerdictPretrainSpared
		}
		out = append(out, c)
	}
	groups := map[string]bool{}
	for id := 1; id < len(set); id++ {
		if set[id] {
			if w := d.wikis.Wiki(wikimap.ID(id)); w != nil {
				groups[w.Group] = true
			}
		}
	}
	for _, td := range d.deploys {
		if td.Scope != event.ScopeTrain || td.Initial || !groups[td.Group] || td.At > at || at-td.At > int64(d.cfg.Attribution) {
			continue
		}
		out = append(out, Candidate{Cause: "train-deploy", Name: td.Group + " " + td.Version, At: ptrTime(td.At), Fits: true,
			Evidence: fmt.Sprintf("the train deployed %s to %s %s before the onset", td.Version, td.Group, minutes(at-td.At))})
	}
	for _, si := range d.sectionIncidents() {
		sid := d.sectionIndex(si.Section)
		touches := false
		for id := 1; id < len(set); id++ {
			if set[id] && int(d.fleet.sectionOf[id]) == sid {
				touches = true
				break
			}
		}
		if !touches {
			continue
		}
		c := Candidate{Cause: "section-incident", Name: si.Section, At: ptrTime(si.Since.UnixNano()), Fits: true,
			Evidence: fmt.Sprintf("erroring requests %.1f× and 5xx %.1f× the section's baseline", si.ErrorFactor, si.Status5xx)}
		if code != nil && (code.Verdict == VerdictPretrainSpared || code.Verdict == VerdictPretrainWorse) {
			c.Fits = false
			c.Evidence += "; but the harm depends on the serving code (" + code.Verdict + "), which an infrastructure incident does not explain"
		}
		out = append(out, c)
	}
	if d.fleet.active {
		out = append(out, Candidate{Cause: "fleet-incident", Name: "fleet", At: ptrTime(d.fleet.since), Fits: true,
			Evidence: "the train fleet's error rate jumped across sections at once"})
	}
	return out
}

func ptrTime(ns int64) *time.Time {
	t := ts(ns)
	return &t
}

// margin says by how much the Pretrain explanation wins: the code test's
// p-value for the direction it found against the level, and which other
// candidates the evidence rules out.
func winMargin(code CodeTest, cands []Candidate) string {
	p := math.Min(code.PWorse, code.PSpared)
	var out []string
	for _, c := range cands {
		if c.Cause != "pretrain-deploy" && !c.Fits {
			out = append(out, c.Cause+" "+c.Name)
		}
	}
	s := fmt.Sprintf("code test p=%s against level %s (%.0f× margin)", fmtP(p), fmtP(codeLevel), codeLevel/math.Max(p, 1e-300))
	if len(out) > 0 {
		s += "; ruled out: " + strings.Join(out, ", ")
	}
	return s
}

// otherFits says whether a candidate other than the Pretrain deploy fits.
func otherFits(cands []Candidate) (string, bool) {
	for _, c := range cands {
		if c.Cause != "pretrain-deploy" && c.Fits {
			return c.Cause + " " + c.Name + ": " + c.Evidence, true
		}
	}
	return "", false
}

// sectionIndex returns the fleet state's index of a section name, -1 if none.
func (d *Detector) sectionIndex(name string) int {
	for i, n := range d.fleet.names {
		if n == name {
			return i
		}
	}
	return -1
}

// sectionIncidents lists the sections in an incident as of the last bucket.
func (d *Detector) sectionIncidents() []SectionIncident {
	fs := &d.fleet
	var out []SectionIncident
	for s := 0; s < fs.nsec; s++ {
		if !fs.secActive[s] {
			continue
		}
		si := SectionIncident{Section: fs.names[s], Since: ts(fs.secSince[s]), ErrorFactor: fs.secFactor[s], Status5xx: fs.sec5xx[s]}
		if c := fs.secCode[s]; c != nil {
			cc := *c
			si.Code = &cc
		}
		out = append(out, si)
	}
	return out
}

// sectionCode runs the code test of a section incident on the cohort's
// section: the cohort's Pretrain-served erroring requests against the
// section's train-served ones since the incident began.
func (d *Detector) sectionCode(s int, since, to int64) *CodeTest {
	if !d.cohortSections[s] {
		return nil
	}
	d.sumP = d.w.SumWikis(event.ScopePretrain, since, to, d.sumP[:0])
	d.sumT = d.w.SumWikis(event.ScopeTrain, since, to, d.sumT[:0])
	k, rp := d.cohortCounts(d.sumP, event.ScopePretrain)
	var n, rt int64
	for id := 1; id < len(d.sumT); id++ {
		if int(d.fleet.sectionOf[id]) == s && !d.topo.cohort.has(wikimap.ID(id)) {
			n += d.sumT[id].ErrorRequests
			rt += d.sumT[id].Requests
		}
	}
	c := codeTest(d.fleet.names[s], k, rp, n, rt, d.cfg.Margin)
	return &c
}

// debugTraffic reports the debug release's traffic.
func (d *Detector) debugTraffic() []DebugTraffic {
	d.debugBuf = d.w.Debug(d.debugBuf[:0])
	out := make([]DebugTraffic, 0, len(d.debugBuf))
	for _, t := range d.debugBuf {
		out = append(out, DebugTraffic{Wiki: d.wikiName(t.Wiki), Requests: t.Requests, Errors: t.Errors, Last: ts(t.Last)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Requests+out[i].Errors > out[j].Requests+out[j].Errors })
	return out
}

// finite returns x, or 0 for an infinity or NaN (JSON has neither).
func finite(x float64) float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return 0
	}
	return x
}

// infraFingerprint says whether an error looks like a database fault's by
// its class, channel or message: a connection, lag, read-only, lock or
// deadlock error. Database incidents are the commonest confounder of a
// core-DB spillover, so blaming one of these on Pretrain takes the code
// test at alpha. Cache and timeout errors are left to the section-incident
// guard: a cache key written by Pretrain code is a real spillover path.
func infraFingerprint(info *window.FingerprintInfo) bool {
	for _, s := range []string{info.Class, info.Channel, info.Message} {
		l := strings.ToLower(s)
		for _, w := range infraWords {
			if strings.Contains(l, w) {
				return true
			}
		}
	}
	return false
}

var infraWords = []string{
	"dbconnection", "connection refused", "cannot access the database", "too many connections", "lost connection",
	"dbreadonly", "read-only", "readonly", "dbreplication", "replica lag", "lagged", "lock wait", "deadlock",
}
