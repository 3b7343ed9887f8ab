package detect

import (
	"fmt"
	"strings"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Guards. A rule that has a signal still holds its finding back (pending,
// Evidence.Insufficient, no blame) while any guard holds: too little data
// before the deploy, a burst (too few distinct requests or buckets), a
// fleet-wide incident, a test not significant at its level, errors not
// concentrated where the data path leads, or another cause that explains
// the signal as well (undecided). Each rule records which guards held, in
// its own order, with their numbers; whether it fires follows from them,
// and the evidence's note is rendered from them here alone.

// guardKind is what held a finding back.
type guardKind int

const (
	// guardNoPrePeriod: too little data before the deploy to call a
	// fingerprint new (detect.min_pre_period).
	guardNoPrePeriod guardKind = iota + 1
	// guardBurstDistinct: fewer distinct requests than detect.min_distinct.
	guardBurstDistinct
	// guardBurstBuckets: the signal in fewer buckets than detect.min_buckets.
	guardBurstBuckets
	// guardBurst: either burst guard, reported as one (distinct requests
	// and buckets together).
	guardBurst
	// guardFleet: a fleet-wide incident is under way.
	guardFleet
	// guardEvidence: a test's p-value above its level.
	guardEvidence
	// guardEValue: the sequential test's e-value below its threshold.
	guardEValue
	// guardNotConcentrated: the errors do not concentrate on the wikis the
	// shared-data path reaches.
	guardNotConcentrated
	// guardUndecided: another cause explains the signal as well, or the
	// code test cannot tell; status lists it as undetermined.
	guardUndecided
)

// guard is one guard that held a finding back, with its numbers. Only the
// fields of its kind are set.
type guard struct {
	kind guardKind

	distinct int64 // distinct requests (guardBurstDistinct, guardBurst)
	buckets  int   // buckets with the signal (guardBurstBuckets, guardBurst)
	need     int   // the distinct requests or buckets needed
	errors   bool  // guardBurstBuckets: buckets with cohort errors (the rate test), not sightings of a fingerprint

	beyond bool // guardFleet: the incident is more than this fingerprint

	test     string  // guardEvidence: the test ("code test", "onset", …; "" for the rule's own)
	p, level float64 // guardEvidence: its p-value and level; guardNotConcentrated: the concentration p

	e, threshold float64 // guardEValue: the e-value and the 1/alpha it needs

	where  string // guardNotConcentrated: the wikis the data path reaches
	in, of int64  // guardNotConcentrated: errors there, of all

	reason string // guardUndecided: what else explains it, or why nothing can tell
}

// String renders a guard as the evidence's note says it.
func (g guard) String() string {
	switch g.kind {
	case guardNoPrePeriod:
		return "insufficient evidence: too little data before the deploy to call this fingerprint new"
	case guardBurstDistinct:
		return fmt.Sprintf("burst guard: %d distinct requests of the %d needed", g.distinct, g.need)
	case guardBurstBuckets:
		if g.errors {
			return fmt.Sprintf("burst guard: errors in %d of the %d buckets needed", g.buckets, g.need)
		}
		return fmt.Sprintf("burst guard: seen in %d of the %d buckets needed", g.buckets, g.need)
	case guardBurst:
		return fmt.Sprintf("burst guard: %d distinct requests in %d buckets", g.distinct, g.buckets)
	case guardFleet:
		if g.beyond {
			return "a fleet-wide incident is under way beyond this fingerprint: not blaming Pretrain"
		}
		return "a fleet-wide incident is under way: not blaming Pretrain while it lasts"
	case guardEvidence:
		test := ""
		if g.test != "" {
			test = g.test + " "
		}
		return fmt.Sprintf("insufficient evidence: %sp=%s above %s", test, fmtP(g.p), fmtP(g.level))
	case guardEValue:
		return fmt.Sprintf("insufficient evidence: e-value %.3g of the %.3g needed", g.e, g.threshold)
	case guardNotConcentrated:
		return fmt.Sprintf("not concentrated on %s (%d of %d errors there; p=%s): a fleet-wide cause could explain it", g.where, g.in, g.of, fmtP(g.p))
	case guardUndecided:
		return g.reason
	}
	return fmt.Sprintf("guard %d", int(g.kind))
}

// guards are the guards that held one finding back, in the rule's order.
type guards []guard

// add records g when it holds.
func (gs *guards) add(holds bool, g guard) {
	if holds {
		*gs = append(*gs, g)
	}
}

// burst records the burst guards: one request, or one crawler, must not
// make a finding; it needs detect.min_distinct distinct requests in
// detect.min_buckets buckets.
func (gs *guards) burst(distinct int64, buckets int, cfg *Config) {
	gs.add(distinct < int64(cfg.MinDistinct), guard{kind: guardBurstDistinct, distinct: distinct, need: cfg.MinDistinct})
	gs.add(buckets < cfg.MinBuckets, guard{kind: guardBurstBuckets, buckets: buckets, need: cfg.MinBuckets})
}

// blocks says whether the finding is held back: every guard blocks.
func (gs guards) blocks() bool { return len(gs) > 0 }

// only says whether the finding is held back by guards of kind k alone:
// an undecided signal no other guard holds is what status lists.
func (gs guards) only(k guardKind) bool {
	for _, g := range gs {
		if g.kind != k {
			return false
		}
	}
	return len(gs) > 0
}

// note renders the guards for the evidence's note, after the informational
// prefixes (how the finding was reached, whose it is), joined by "; ".
func (gs guards) note(prefix ...string) string {
	parts := make([]string, 0, len(prefix)+len(gs))
	parts = append(parts, prefix...)
	for _, g := range gs {
		parts = append(parts, g.String())
	}
	return strings.Join(parts, "; ")
}

// first renders the first guard alone, "" when none holds: the rate test's
// note names the one that matters most.
func (gs guards) first() string {
	if len(gs) == 0 {
		return ""
	}
	return gs[0].String()
}

// preCovered says whether the window saw enough before a deploy for an
// error after it to be called new.
func (d *Detector) preCovered(at int64) bool {
	return at-max(d.dataStart, d.w.Oldest()) >= int64(d.cfg.MinPrePeriod)
}

// explainsFleet says whether fingerprint fp makes at least half of the
// train fleet's erroring requests since the fleet-wide incident began: then
// the "incident" is this one error, whatever its cause.
func (d *Detector) explainsFleet(fp uint64, to int64) bool {
	from := d.fleet.since
	n := d.w.FingerprintDistinct(fp, event.ScopeTrain, from, to)
	d.sumT = d.w.SumWikis(event.ScopeTrain, from, to, d.sumT[:0])
	var all int64
	for id := 1; id < len(d.sumT); id++ {
		all += d.sumT[id].ErrorRequests
	}
	return all > 0 && 2*n >= all
}

// otherIncident says why a section incident on the wikis of set, or a
// fleet-wide one, explains a fingerprint better than a Pretrain deploy:
// when the incident is more than this fingerprint (other errors rose too,
// the infrastructure fingerprints are not flat). "" when none does.
func (d *Detector) otherIncident(fp uint64, set wikiSet, to int64) string {
	fs := &d.fleet
	for s := 0; s < fs.nsec; s++ {
		if !fs.secActive[s] {
			continue
		}
		touches := false
		for id := 1; id < len(set); id++ {
			if set[id] && int(fs.sectionOf[id]) == s {
				touches = true
				break
			}
		}
		if !touches {
			continue
		}
		from := fs.secSince[s]
		n := d.w.FingerprintSection(fp, d.w.SectionOf(d.firstWikiOf(s)), event.ScopeTrain, from, to)
		d.sumT = d.w.SumWikis(event.ScopeTrain, from, to, d.sumT[:0])
		var all int64
		for id := 1; id < len(d.sumT); id++ {
			if int(fs.sectionOf[id]) == s {
				all += d.sumT[id].ErrorRequests
			}
		}
		if 2*n < all {
			return fmt.Sprintf("a section incident on %s since %s is more than this error (%d of its %d erroring requests): infrastructure explains it as well as code",
				fs.names[s], ts(from).Format("15:04"), n, all)
		}
	}
	return ""
}

// firstWikiOf returns a wiki of fleet section s.
func (d *Detector) firstWikiOf(s int) wikimap.ID {
	for id := 1; id < len(d.fleet.sectionOf); id++ {
		if int(d.fleet.sectionOf[id]) == s {
			return wikimap.ID(id)
		}
	}
	return 0
}
