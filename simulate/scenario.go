package simulate

// This file is the scenario table (baseScenarios) and what a plan is made
// of. It is longer than the others on purpose: each scenario is a few lines
// of data read top to bottom beside its neighbours, and splitting the table
// would only scatter the stories a reader compares.

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/wikimedia/pretrain-detector/wikimap"
)

// scopeMatch says which requests an incident attaches its errors to.
type scopeMatch uint8

const (
	matchTrain    scopeMatch = iota // requests served by the train fleet
	matchPretrain                   // requests served by mw-pretrain
	matchAny
)

// plannedIncident drives the generator: each matching request during
// [onset, end) logs def with probability p.
type plannedIncident struct {
	def          *errorDef
	wikis        []bool // by wiki ID
	scope        scopeMatch
	p            float64
	onset, end   int64 // Unix ns
	reroute      bool  // pretrain-leak: the wikis' requests are served by mw-pretrain
	onTrainJobrs bool  // the error is logged by a TRAIN jobrunner whatever the request's scope
	// debug: a debugShare of the wikis' requests are sent to mw-pretrain's
	// debug release (the debug header); def, if any, is logged on those
	// requests with probability p.
	debug      bool
	debugShare float64
	repeat     int // def logged this many times per hit (a loop in one request)
	maxHits    int // at most this many requests hit; 0 = no limit
	hits       int
	status     int // forced response status of a hit request; def may be nil
	// pauseFrom, pauseTo: a quiet spell within the incident (Unix ns; 0 = none).
	pauseFrom, pauseTo int64
}

type plannedDeploy struct {
	Deploy
	at int64
}

// plan is a resolved scenario: config, ground truth, and what drives traffic.
type plan struct {
	cfg       resolved
	wikis     *wikimap.Map
	testwiki  wikimap.ID
	model     *trafficModel
	truth     GroundTruth
	deploys   []plannedDeploy // by time
	incidents []*plannedIncident
	start     int64
	end       int64
}

// Scenario timing. Deploy times carry a seeded jitter; incident onsets come
// a fixed delay after the deploy they follow, as the ground truth records.
const deployJitter = 5 * time.Minute

// Default starts: a Tuesday (the group0 train day) at noon UTC, three hours
// before the daily peak; Wednesday for the group1 train; and the Monday
// before for the week.
func tuesdayNoon() time.Time   { return time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC) }
func wednesdayNoon() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }
func mondayMidnight() time.Time {
	return time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
}

type scenarioDef struct {
	info  ScenarioInfo
	start time.Time
	rate  float64
	build func(b *builder) error
}

func findScenario(name string) (scenarioDef, bool) {
	for _, d := range scenarioDefs() {
		if d.info.Name == name {
			return d, true
		}
	}
	return scenarioDef{}, false
}

func scenarioDefs() []scenarioDef {
	return append(baseScenarios(), attributionScenarios()...)
}

func baseScenarios() []scenarioDef {
	return []scenarioDef{
		{
			info: ScenarioInfo{Name: "quiet", DefaultDuration: 3 * time.Hour,
				Description: "A quiet Tuesday: two Pretrain deploys and the group0 train deploy, background noise only, no incident."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				b.pretrainDeploy(b.jittered(20 * time.Minute))
				b.trainDeploy(b.jittered(90*time.Minute), "group0")
				b.pretrainDeploy(b.jittered(155 * time.Minute))
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "quiet-week", DefaultDuration: 7 * 24 * time.Hour,
				Description: "Seven days from Monday 00:00 UTC: Pretrain deploys every 3-6 hours, the train on Tuesday (group0), Wednesday (group1) and Thursday (group2), no incident. Default Rate 20 so it generates in seconds."},
			start: mondayMidnight(), rate: 20,
			build: func(b *builder) error {
				for t := b.start.Add(time.Duration(30+b.rng.IntN(90)) * time.Minute); t.Before(b.end); t = t.Add(time.Duration(180+b.rng.IntN(181)) * time.Minute) {
					b.pretrainDeploy(t)
				}
				for day := b.start.Truncate(24 * time.Hour); day.Before(b.end); day = day.Add(24 * time.Hour) {
					group := map[time.Weekday]string{time.Tuesday: "group0", time.Wednesday: "group1", time.Thursday: "group2"}[day.Weekday()]
					if group == "" {
						continue
					}
					at := day.Add(13*time.Hour + b.jitter(15*time.Minute))
					if !at.Before(b.start) {
						b.trainDeploy(at, group)
					}
				}
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "pretrain-regression", DefaultDuration: 2 * time.Hour,
				Description: "After a Pretrain deploy, testwiki (served by mw-pretrain) logs a NEW exception at ~10/min and an existing PHP warning rises to ~3/min; the train fleet is unaffected."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				onset := d.At.Add(2 * time.Minute)
				b.incident(incidentSpec{kind: "pretrain-regression", def: newPretrainRegressionError(),
					wikis: []wikimap.ID{b.p.testwiki}, scope: matchPretrain, perMinute: 10,
					onset: onset, end: onset.Add(40 * time.Minute), deploy: d})
				existing, err := b.background("php-warning-title")
				if err != nil {
					return err
				}
				b.incident(incidentSpec{kind: "pretrain-regression", def: existing,
					wikis: []wikimap.ID{b.p.testwiki}, scope: matchPretrain, perMinute: 3,
					onset: onset, end: onset.Add(40 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "pretrain-regression-slow", DefaultDuration: 2 * time.Hour,
				Description: "After a Pretrain deploy, testwiki logs a NEW exception at ~1/min for 15 minutes (about 15 errors) at its real traffic: the small-count case."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				onset := d.At.Add(2 * time.Minute)
				b.incident(incidentSpec{kind: "pretrain-regression", def: newPretrainRegressionError(),
					wikis: []wikimap.ID{b.p.testwiki}, scope: matchPretrain, perMinute: 1,
					onset: onset, end: onset.Add(15 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "spillover-s3", DefaultDuration: 2 * time.Hour,
				Description: "After a Pretrain deploy, train-served s3 wikis (not testwiki) log a new DBQuery error (unknown column written by Pretrain's schema change) in proportion to their traffic, a few per wiki, far below scap's 150-per-20-s guardrail."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				onset := d.At.Add(5 * time.Minute)
				b.incident(incidentSpec{kind: "shared-data-spillover", def: newSpilloverS3Error(),
					wikis: b.without(b.p.wikis.InSection("s3"), b.p.testwiki), scope: matchTrain, p: 0.0015,
					onset: onset, end: onset.Add(40 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "spillover-jobrunner", DefaultDuration: 2 * time.Hour,
				Description: "After a Pretrain deploy, testwiki jobs run by the TRAIN jobrunners (changeprop bypasses the mesh) fail on job parameters written by Pretrain code: errors on testwiki with servergroup kube-mw-jobrunner and the train mwversion."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				onset := d.At.Add(5 * time.Minute)
				b.incident(incidentSpec{kind: "shared-data-spillover", def: newSpilloverJobError(),
					wikis: []wikimap.ID{b.p.testwiki}, scope: matchPretrain, perMinute: 5, onTrainJobrs: true,
					onset: onset, end: onset.Add(40 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "train-regression", DefaultDuration: 2 * time.Hour,
				Description: "A Pretrain deploy, then 20 minutes later the group1 train deploy; a new TypeError follows on group1 wikis running the new branch. Pretrain is innocent."},
			start: wednesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				pd := b.pretrainDeploy(b.jittered(30 * time.Minute))
				d := b.trainDeploy(pd.At.Add(20*time.Minute), "group1")
				onset := d.At.Add(2 * time.Minute)
				b.incident(incidentSpec{kind: "train-regression", def: newTrainRegressionError(),
					wikis: b.p.wikis.InGroup("group1"), scope: matchTrain, p: 0.002,
					onset: onset, end: onset.Add(50 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "fleet-db-incident", DefaultDuration: 2 * time.Hour,
				Description: "A Pretrain deploy, then 8 minutes later a fleet-wide database incident: DBConnectionError on every wiki and both scopes (testwiki included) in proportion to traffic. A negative case: nothing may blame Pretrain."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.pretrainDeploy(b.jittered(50 * time.Minute))
				onset := d.At.Add(8 * time.Minute)
				b.incident(incidentSpec{kind: KindFleetIncident, def: newFleetDBError(),
					wikis: b.all(), scope: matchAny, p: 0.01,
					onset: onset, end: onset.Add(12 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "pretrain-leak", DefaultDuration: 2 * time.Hour,
				Description: "After a Pretrain deploy a too-wide Host match routes test2wiki, testwikidatawiki and testcommonswiki to mw-pretrain: access logs with labels.deployment=mw-pretrain for their domains and kube-mw-pretrain errors naming them."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				onset := d.At.Add(time.Minute)
				var leaked []wikimap.ID
				for _, name := range []string{"test2wiki", "testwikidatawiki", "testcommonswiki"} {
					if id := b.p.wikis.ByNameString(name); id != 0 {
						leaked = append(leaked, id)
					}
				}
				if len(leaked) == 0 {
					return fmt.Errorf("pretrain-leak: the wiki map has none of test2wiki, testwikidatawiki, testcommonswiki")
				}
				b.incident(incidentSpec{kind: "pretrain-leak", def: newLeakError(),
					wikis: leaked, scope: matchPretrain, p: 0.05, reroute: true,
					onset: onset, end: onset.Add(40 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "wiki-anomaly", DefaultDuration: 3 * time.Hour,
				Description: "One mid-size s2/s5/s6 wiki (outside testwiki's cohort) starts logging Scribunto errors from a broken module, ~2/min (at most 30% of its requests), 75 minutes after the only Pretrain deploy: no deploy explains it."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				b.pretrainDeploy(b.jittered(15 * time.Minute))
				var cands []wikimap.ID
				for _, w := range b.p.wikis.Wikis() {
					if w.Size == "medium" && !w.Closed && !w.Private && !w.Test && (w.Section == "s2" || w.Section == "s5" || w.Section == "s6") && b.p.model.weight[w.ID] > 0 {
						cands = append(cands, w.ID)
					}
				}
				if len(cands) == 0 {
					return fmt.Errorf("wiki-anomaly: no medium open s2/s5/s6 wiki in the wiki map")
				}
				// Busier wikis are likelier picks, as a broken module on a busy
				// wiki is what gets noticed.
				ws := make([]float64, len(cands))
				items := make([]int32, len(cands))
				for i, id := range cands {
					ws[i], items[i] = b.p.model.weight[id], int32(id)
				}
				wiki := wikimap.ID(newAlias(items, ws).draw(b.rng))
				onset := b.start.Add(90 * time.Minute)
				b.incident(incidentSpec{kind: "wiki-anomaly", def: newWikiAnomalyError(),
					wikis: []wikimap.ID{wiki}, scope: matchTrain, perMinute: 2, pMax: 0.3,
					onset: onset, end: onset.Add(60 * time.Minute)})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "demo", DefaultDuration: 75 * time.Minute,
				Description: "The demo story: 30 quiet minutes, a Pretrain deploy, and 10 minutes later a shared-data spillover onto s3 wikis strong enough to be seen within minutes, until the end."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.pretrainDeploy(b.start.Add(30 * time.Minute))
				onset := d.At.Add(10 * time.Minute)
				b.incident(incidentSpec{kind: "shared-data-spillover", def: newSpilloverS3Error(),
					wikis: b.without(b.p.wikis.InSection("s3"), b.p.testwiki), scope: matchTrain, p: 0.004,
					onset: onset, end: b.end, deploy: d})
				return nil
			},
		},
	}
}

// incidentSpec is an incident as a scenario states it. Exactly one of p (per
// matching request) and perMinute (expected errors per minute, converted to
// p with the configured rates, at most pMax) is set.
type incidentSpec struct {
	kind         string
	def          *errorDef
	wikis        []wikimap.ID
	scope        scopeMatch
	p, perMinute float64
	pMax         float64 // cap on the p that perMinute converts to; 0 = 1
	onset, end   time.Time
	deploy       *Deploy
	reroute      bool
	onTrainJobrs bool
	debug        bool
	debugShare   float64
	repeat       int
	maxHits      int
	status       int
	pause        [2]time.Time // a quiet spell within [onset, end): one incident that pauses
}

// builder is what a scenario's build function uses.
type builder struct {
	p          *plan
	rng        *rand.Rand
	start, end time.Time
	groupVer   map[string]string
	newest     string
}

// background returns a fresh copy of the catalogue's error id.
func (b *builder) background(id string) (*errorDef, error) {
	for _, d := range backgroundCatalogue() {
		if d.id == id {
			return d, nil
		}
	}
	return nil, fmt.Errorf("no background error %q", id)
}

// jitter returns whole seconds in [-bound, bound].
func (b *builder) jitter(bound time.Duration) time.Duration {
	s := int64(bound / time.Second)
	return time.Duration(b.rng.Int64N(2*s+1)-s) * time.Second
}

func (b *builder) jittered(offset time.Duration) time.Time {
	return b.start.Add(offset + b.jitter(deployJitter))
}

// deployUnderTest plans two Pretrain deploys, about 10 and 60 minutes in,
// and returns the second, the one an incident follows: the first gives the
// detector a rollout before it and the 50 minutes between them a clean
// pre-period.
func (b *builder) deployUnderTest() *Deploy {
	b.pretrainDeploy(b.jittered(10 * time.Minute))
	return b.pretrainDeploy(b.jittered(60 * time.Minute))
}

func (b *builder) pretrainDeploy(at time.Time) *Deploy {
	d := &Deploy{Scope: "pretrain", Version: pretrainVersion(b.newest), At: at}
	b.p.deploys = append(b.p.deploys, plannedDeploy{Deploy: *d, at: at.UnixNano()})
	return d
}

// trainDeploy moves group to the newest branch, or cuts the next branch if
// the group is on the newest already (the Tuesday group0 deploy).
func (b *builder) trainDeploy(at time.Time, group string) *Deploy {
	v := b.newest
	if b.groupVer[group] == v {
		v = bumpVersion(v)
		b.newest = v
	}
	b.groupVer[group] = v
	d := &Deploy{Scope: "train", Group: group, Version: v, At: at}
	b.p.deploys = append(b.p.deploys, plannedDeploy{Deploy: *d, at: at.UnixNano()})
	return d
}

func (b *builder) all() []wikimap.ID {
	ids := make([]wikimap.ID, 0, b.p.wikis.Len())
	for id := 1; id <= b.p.wikis.Len(); id++ {
		ids = append(ids, wikimap.ID(id))
	}
	return ids
}

func (b *builder) without(ids []wikimap.ID, drop wikimap.ID) []wikimap.ID {
	return slices.DeleteFunc(ids, func(id wikimap.ID) bool { return id == drop })
}

// incident records an incident, clipped to the run; one starting at or
// after the end is dropped.
func (b *builder) incident(s incidentSpec) {
	end := s.end
	if end.After(b.end) {
		end = b.end
	}
	if !s.onset.Before(end) {
		return
	}
	set := make([]bool, b.p.wikis.Len()+1)
	names := make([]string, 0, len(s.wikis))
	for _, id := range s.wikis {
		if !set[id] {
			set[id] = true
			names = append(names, b.p.wikis.Wiki(id).DBName)
		}
	}
	slices.Sort(names)

	cfg := b.p.cfg
	f := meanDailyFactor(s.onset, end)
	var reqPerMin float64
	switch {
	case s.debug: // a share of the wikis' train traffic, sent to the debug release
		reqPerMin = cfg.Rate * 60 * f * b.p.model.share(set)
	case s.scope == matchPretrain && !s.reroute:
		if set[b.p.testwiki] {
			reqPerMin = cfg.TestwikiRate * 60 * f
		}
	case s.scope == matchAny:
		reqPerMin = cfg.Rate*60*f*b.p.model.share(set) + boolRate(set[b.p.testwiki], cfg.TestwikiRate*60*f)
	default: // train wikis, or train wikis rerouted to mw-pretrain
		reqPerMin = cfg.Rate * 60 * f * b.p.model.share(set)
	}
	p := s.p
	if s.perMinute > 0 && reqPerMin > 0 {
		pMax := s.pMax
		if pMax == 0 {
			pMax = 1
		}
		p = min(pMax, s.perMinute/reqPerMin)
	}
	inc := Incident{Kind: s.kind, Wikis: names, Onset: s.onset, End: end, ErrorsPerMinute: p * reqPerMin * float64(max(1, s.repeat))}
	if s.def != nil {
		inc.NormalizedMessage, inc.ExceptionClass, inc.Channel, inc.File = s.def.normalized, s.def.class, s.def.channel, s.def.file
	} else {
		inc.ErrorsPerMinute = 0
	}
	if s.debug {
		inc.ErrorsPerMinute *= s.debugShare
	}
	if s.deploy != nil {
		d := *s.deploy
		inc.Deploy = &d
	}
	b.p.truth.Incidents = append(b.p.truth.Incidents, inc)
	b.p.incidents = append(b.p.incidents, &plannedIncident{
		def: s.def, wikis: set, scope: s.scope, p: p,
		onset: s.onset.UnixNano(), end: end.UnixNano(), reroute: s.reroute, onTrainJobrs: s.onTrainJobrs,
		debug: s.debug, debugShare: s.debugShare, repeat: s.repeat, maxHits: s.maxHits, status: s.status,
		pauseFrom: unixOrZero(s.pause[0]), pauseTo: unixOrZero(s.pause[1]),
	})
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func boolRate(ok bool, r float64) float64 {
	if ok {
		return r
	}
	return 0
}

// planStream and trafficStream separate the PCG streams of planning and
// traffic, so that Plan costs nothing and cannot shift traffic draws.
const (
	planStream    = 0x706c616e // "plan"
	trafficStream = 0x74726166 // "traf"
	podStream     = 0x706f6473 // "pods"
	debugStream   = 0x64656267 // "debg"
)

func newPlan(cfg Config, wikis *wikimap.Map) (*plan, error) {
	r, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	if wikis == nil || wikis.Len() == 0 {
		return nil, fmt.Errorf("%w: wiki map is empty", ErrConfig)
	}
	tw := wikis.ByNameString("testwiki")
	if tw == 0 {
		return nil, fmt.Errorf("%w: wiki map has no testwiki, the Pretrain cohort", ErrConfig)
	}
	start, end := r.Start, r.Start.Add(r.Duration)
	p := &plan{
		cfg: r, wikis: wikis, testwiki: tw, model: newTrafficModel(wikis, tw),
		start: start.UnixNano(), end: end.UnixNano(),
		truth: GroundTruth{Scenario: r.Scenario, Seed: r.Seed, Start: start, End: end, Deploys: []Deploy{}, Incidents: []Incident{}},
	}
	if p.model.train == nil {
		return nil, fmt.Errorf("%w: wiki map has no wiki with a host besides testwiki", ErrConfig)
	}
	b := &builder{
		p: p, rng: rand.New(rand.NewPCG(uint64(r.Seed), planStream)),
		start: start, end: end, groupVer: map[string]string{},
	}
	for _, w := range wikis.Wikis() {
		v := strings.TrimPrefix(w.Version, "php-")
		if _, ok := b.groupVer[w.Group]; !ok && w.Group != "" {
			b.groupVer[w.Group] = v
		}
		if versionLess(b.newest, v) {
			b.newest = v
		}
	}
	if err := r.def.build(b); err != nil {
		return nil, fmt.Errorf("building scenario %s: %w", r.Scenario, err)
	}
	// Deploys outside the run are not part of it.
	p.deploys = slices.DeleteFunc(p.deploys, func(d plannedDeploy) bool { return d.at < p.start || d.at >= p.end })
	slices.SortStableFunc(p.deploys, func(a, b plannedDeploy) int { return cmp.Compare(a.at, b.at) })
	for _, d := range p.deploys {
		p.truth.Deploys = append(p.truth.Deploys, d.Deploy)
	}
	return p, nil
}

// versionLess orders versions by their digit runs numerically ("wmf.9" <
// "wmf.16"), other bytes lexically.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			i, j := digitRun(a), digitRun(b)
			na, nb := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digitRun(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}
