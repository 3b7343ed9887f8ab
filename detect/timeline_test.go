package detect

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// Timelines: small hand-written fleets. A handful of wikis serve steady
// traffic (so many requests in each 10-s bucket, one erroring request in so
// many buckets), a deploy marker names a deploy, and each case writes the
// errors it is about, request by request. detect is a pure function of
// them: each case says which kinds fire, and, for a signal held back, which
// guards held it, in order.

// tlWiki is one wiki of the timelines' fleet.
type tlWiki struct {
	name      string
	scope     event.Scope
	perBucket int // requests per 10-s bucket
	errEvery  int // one background erroring request every so many buckets
}

// tlFleet: testwiki (the cohort, Pretrain-served), four train-served wikis
// of its section s3 (the scope of its code test) and one wiki of each of
// five other sections, so that a fleet-wide incident can be told from a
// section's.
var tlFleet = []tlWiki{
	{"testwiki", event.ScopePretrain, 5, 20},
	{"abwiki", event.ScopeTrain, 150, 1},
	{"acewiki", event.ScopeTrain, 100, 1},
	{"afwiki", event.ScopeTrain, 100, 1},
	{"mediawikiwiki", event.ScopeTrain, 50, 2}, // s3, group0
	{"enwiki", event.ScopeTrain, 150, 1},       // s1
	{"itwiki", event.ScopeTrain, 100, 1},       // s2
	{"commonswiki", event.ScopeTrain, 100, 1},  // s4
	{"dewiki", event.ScopeTrain, 100, 1},       // s5
	{"frwiki", event.ScopeTrain, 100, 1},       // s6
}

var tlS3 = []string{"abwiki", "acewiki", "afwiki", "mediawikiwiki"}

const (
	tlTrainVersion    = "1.47.0-wmf.16"
	tlNewTrainVersion = "1.47.0-wmf.17"
	tlPretrainVersion = "1.47.0-alpha"
	fpBackground      = 0x1002 // the steady background error
)

// tlErr is one error line: at a time relative to the deploy, on a wiki and
// scope, in a request (one request may log many lines).
type tlErr struct {
	at      time.Duration
	wiki    string
	scope   event.Scope
	fp      uint64
	msg     string
	channel string
	shared  event.SharedClass
	req     string
}

// tlErrors writes n lines of one error, every `every` from `from`, on the
// wikis given in turn; req names each line's request ("%d" is the line's
// number: distinct requests; without it, one request logs them all).
func tlErrors(n int, from, every time.Duration, sc event.Scope, wikis []string, e tlErr, req string) []tlErr {
	out := make([]tlErr, 0, n)
	for i := range n {
		e.at, e.wiki, e.scope = from+time.Duration(i)*every, wikis[i%len(wikis)], sc
		e.req = req
		if strings.Contains(req, "%d") {
			e.req = fmt.Sprintf(req, i)
		}
		out = append(out, e)
	}
	return out
}

// tlRate writes, from `from` to `to` after the deploy, one erroring
// request in every `oneIn` requests of each of wikis on scope sc, as the
// steady traffic's requests go by.
type tlRate struct {
	from, to time.Duration
	sc       event.Scope
	wikis    []string
	oneIn    int
	e        tlErr
}

// timeline is one case.
type timeline struct {
	name       string
	pre, post  time.Duration // traffic before and after the deploy
	pretrain   bool          // a Pretrain deploy marker at the deploy
	trainGroup string        // a train deploy marker of this group at the deploy (new version)
	errs       []tlErr
	rates      []tlRate

	fires   []Kind      // exactly the kinds that fire, in Kinds order
	pending Kind        // a finding of this kind is pending at the end ...
	heldBy  []guardKind // ... held back by these guards, in order
	note    string      // ... and its note says so (when set)
	// undetermined: status lists the pending finding as undetermined (no
	// guard but undecided held it)
	undetermined bool
	fleet        bool // a fleet-wide incident is under way at the end
}

var (
	newBug = tlErr{fp: 0x3003, msg: "TypeError: Foo::bar(): Argument #1 ($x) must be of type int", channel: "exception"}
	dbBug  = tlErr{fp: 0x3001, msg: "Wikimedia\\Rdbms\\DBQueryError: Error 1054: Unknown column 'foo_bar' in 'field list'", channel: "DBQuery", shared: event.SharedCoreDB}
	dbDown = tlErr{fp: 0x3002, msg: "Wikimedia\\Rdbms\\DBConnectionError: Cannot access the database", channel: "DBConnection", shared: event.SharedCoreDB}
	warn   = tlErr{fp: fpBackground, msg: "PHP Warning: Undefined array key \"title\"", channel: "error"}
)

var allWikis = func() []string {
	var out []string
	for _, w := range tlFleet {
		out = append(out, w.name)
	}
	return out
}()

var testwiki = []string{"testwiki"}

var timelines = []timeline{
	{
		name: "a new error on testwiki's Pretrain-served requests, from enough distinct requests, is a pretrain-regression",
		pre:  35 * time.Minute, post: 5 * time.Minute, pretrain: true,
		errs:  tlErrors(4, time.Minute, 30*time.Second, event.ScopePretrain, testwiki, newBug, "req-bug-%d"),
		fires: []Kind{KindPretrainRegression},
	},
	{
		name: "the same error from one request is a burst: held back",
		pre:  35 * time.Minute, post: 5 * time.Minute, pretrain: true,
		errs:    tlErrors(8, time.Minute, 15*time.Second, event.ScopePretrain, testwiki, newBug, "req-loop"),
		pending: KindPretrainRegression,
		// Its lines span eight buckets, but one request looping on an
		// error is one request: too few, and no evidence of a regression.
		heldBy: []guardKind{guardBurstDistinct, guardEvidence},
		note:   "burst guard: 1 distinct requests of the 3 needed; insufficient evidence: code test p=0.018 above 0.001",
	},
	{
		name: "enough requests within one bucket are a burst: held back",
		pre:  35 * time.Minute, post: 5 * time.Minute, pretrain: true,
		errs:    tlErrors(4, time.Minute, time.Second, event.ScopePretrain, testwiki, newBug, "req-bug-%d"),
		pending: KindPretrainRegression,
		heldBy:  []guardKind{guardBurstBuckets},
		note:    "burst guard: seen in 1 of the 3 buckets needed",
	},
	{
		name: "too little data before the deploy to call the error new: insufficient evidence",
		pre:  10 * time.Minute, post: 5 * time.Minute, pretrain: true,
		errs:    tlErrors(4, time.Minute, 30*time.Second, event.ScopePretrain, testwiki, newBug, "req-bug-%d"),
		pending: KindPretrainRegression,
		heldBy:  []guardKind{guardNoPrePeriod},
		note:    "insufficient evidence: too little data before the deploy to call this fingerprint new",
	},
	{
		name: "a new error on testwiki during a fleet-wide incident is held back while it lasts",
		pre:  35 * time.Minute, post: 6 * time.Minute, pretrain: true,
		rates: []tlRate{{from: 0, to: 6 * time.Minute, sc: event.ScopeTrain, wikis: allWikis, oneIn: 8, e: warn}},
		errs:  tlErrors(4, 2*time.Minute, 30*time.Second, event.ScopePretrain, testwiki, newBug, "req-bug-%d"),
		fleet: true, pending: KindPretrainRegression,
		heldBy: []guardKind{guardFleet},
		note:   "a fleet-wide incident is under way: not blaming Pretrain while it lasts",
	},
	{
		name: "a database error on every wiki of both scopes blames nobody",
		pre:  35 * time.Minute, post: 6 * time.Minute, pretrain: true,
		rates: []tlRate{
			{from: 0, to: 6 * time.Minute, sc: event.ScopeTrain, wikis: allWikis, oneIn: 8, e: dbDown},
			{from: 0, to: 6 * time.Minute, sc: event.ScopePretrain, wikis: testwiki, oneIn: 8, e: dbDown},
		},
		fleet: true, pending: KindSharedDataSpillover,
		// Not on the cohort's section more than elsewhere, and as often on
		// Pretrain-served requests as on train-served ones.
		heldBy: []guardKind{guardNotConcentrated, guardUndecided},
	},
	{
		name: "a new database error on the train-served wikis of testwiki's section, sparing its Pretrain-served requests, is a spillover",
		pre:  35 * time.Minute, post: 8 * time.Minute, pretrain: true,
		rates: []tlRate{{from: time.Minute, to: 8 * time.Minute, sc: event.ScopeTrain, wikis: tlS3, oneIn: 20, e: dbBug}},
		fires: []Kind{KindSharedDataSpillover},
	},
	{
		name: "the same spillover carried by old and new train versions after a train deploy too: undetermined",
		pre:  35 * time.Minute, post: 8 * time.Minute, pretrain: true, trainGroup: "group0",
		rates:   []tlRate{{from: time.Minute, to: 8 * time.Minute, sc: event.ScopeTrain, wikis: tlS3, oneIn: 20, e: dbBug}},
		pending: KindSharedDataSpillover, heldBy: []guardKind{guardUndecided}, undetermined: true,
		// The note: how it was reached, the guard, and what finiteEvidence
		// adds (no control errors: the rate ratio is unbounded).
		note: "reached via shared data (the cohort's DB section); both the Pretrain deploy and a train deploy could explain the onset (errors carry old and new train versions); rate_ratio unbounded (reported as 0)",
	},
	{
		name: "an existing error rising on testwiki's Pretrain-served requests alone is a pretrain-regression (the rate test)",
		pre:  35 * time.Minute, post: 8 * time.Minute, pretrain: true,
		rates: []tlRate{{from: time.Minute, to: 8 * time.Minute, sc: event.ScopePretrain, wikis: testwiki, oneIn: 3, e: warn}},
		fires: []Kind{KindPretrainRegression},
	},
	{
		name: "a new error carried only by the version a train deploy brought is the train's",
		pre:  35 * time.Minute, post: 5 * time.Minute, trainGroup: "group0",
		errs:  tlErrors(6, time.Minute, 30*time.Second, event.ScopeTrain, []string{"mediawikiwiki"}, newBug, "req-bug-%d"),
		fires: []Kind{KindTrainRegression},
	},
}

func TestTimelines(t *testing.T) {
	for _, tc := range timelines {
		t.Run(tc.name, func(t *testing.T) {
			s := newSynth(t)
			d := s.detector(t)
			fired := runTimeline(t, s, d, tc)
			var kinds []Kind
			for _, k := range Kinds {
				if slices.ContainsFunc(fired, func(f Finding) bool { return f.Kind == k }) {
					kinds = append(kinds, k)
				}
			}
			require.Equal(t, tc.fires, kinds, "the kinds that fired: %v", fired)
			on, _ := d.FleetIncident()
			require.Equal(t, tc.fleet, on, "fleet-wide incident")
			und := slices.ContainsFunc(d.CohortStatus().Undetermined, func(u Undetermined) bool { return u.Kind == tc.pending })
			require.Equal(t, tc.undetermined, und, "status lists it as undetermined: %+v", d.CohortStatus().Undetermined)
			if tc.pending == "" {
				return
			}
			var held *tracked
			for _, tr := range d.findings {
				if tr.f.Kind == tc.pending {
					require.Nil(t, held, "one %s finding", tc.pending)
					held = tr
				}
			}
			require.NotNil(t, held, "a pending %s finding", tc.pending)
			require.Equal(t, StatePending, held.f.State)
			require.True(t, held.f.Evidence.Insufficient, "a held finding says its evidence is insufficient")
			var got []guardKind
			for _, g := range held.held {
				got = append(got, g.kind)
			}
			require.Equal(t, tc.heldBy, got, "the guards that held it: %s", held.f.Evidence.Note)
			if tc.note != "" {
				require.Equal(t, tc.note, held.f.Evidence.Note)
			}
			t.Logf("held back: %s", held.f.Evidence.Note)
		})
	}
}

// runTimeline writes a timeline into s's window, evaluating as it goes as
// the pipeline does, and returns the findings that fired.
func runTimeline(t *testing.T, s *synth, d *Detector, tc timeline) []Finding {
	t.Helper()
	deploy := t0.Add(tc.pre)
	end := deploy.Add(tc.post)
	bw := time.Duration(s.store.BucketWidth())
	wikis := make([]wikimap.ID, len(tlFleet))
	for i, w := range tlFleet {
		wikis[i] = s.m.ByNameString(w.name)
		require.NotZero(t, wikis[i], w.name)
	}
	trainVer, newVer, preVer := s.versions.ID([]byte(tlTrainVersion)), s.versions.ID([]byte(tlNewTrainVersion)), s.versions.ID([]byte(tlPretrainVersion))
	version := func(id wikimap.ID, sc event.Scope, at time.Time) uint32 {
		switch {
		case sc == event.ScopePretrain:
			return preVer
		case tc.trainGroup != "" && !at.Before(deploy) && s.m.Wiki(id).Group == tc.trainGroup:
			return newVer
		}
		return trainVer
	}
	var fired []Finding
	evaluate := func(wm int64) {
		for _, f := range d.Evaluate(wm) {
			if f.State == StateFiring {
				fired = append(fired, f)
			}
		}
	}
	req := 0
	errorLine := func(at time.Time, id wikimap.ID, sc event.Scope, e tlErr, reqID string) {
		ver := version(id, sc, at)
		ev := event.Event{Time: at.UnixNano(), Kind: event.KindError, Wiki: id, Scope: sc, Version: ver, Fingerprint: e.fp, Shared: e.shared}
		if sc == event.ScopePretrain {
			ev.Rollout = s.rollout
		}
		det := event.Detail{Message: []byte(e.msg), Exemplar: []byte(e.msg), Channel: []byte(e.channel), ReqID: []byte(reqID), Version: []byte(s.versions.String(ver))}
		s.w.Add(&ev, &det)
	}
	errs := slices.Clone(tc.errs)
	slices.SortStableFunc(errs, func(a, b tlErr) int { return int(a.at - b.at) })
	next := 0
	deployed := false
	bucket := 0
	for b0 := t0; b0.Before(end); b0, bucket = b0.Add(bw), bucket+1 {
		if !deployed && !b0.Before(deploy) {
			deployed = true
			if tc.pretrain {
				require.NoError(t, s.store.AddMarker(window.Deploy{Scope: event.ScopePretrain, Version: "main-bbbb", At: deploy.UnixNano(), Source: "api"}))
			}
			if tc.trainGroup != "" {
				require.NoError(t, s.store.AddMarker(window.Deploy{Scope: event.ScopeTrain, Group: tc.trainGroup, Version: tlNewTrainVersion, At: deploy.UnixNano(), Source: "api"}))
			}
		}
		for i, w := range tlFleet {
			id := wikis[i]
			for j := range w.perBucket {
				at := b0.Add(time.Duration(j) * bw / time.Duration(w.perBucket))
				req++
				ev := event.Event{Time: at.UnixNano(), Kind: event.KindRequest, Wiki: id, Scope: w.scope, Status: 200, Version: version(id, w.scope, at)}
				if w.scope == event.ScopePretrain {
					ev.Rollout = s.rollout
				}
				s.w.Add(&ev, &event.Detail{})
				if j == 0 && bucket%w.errEvery == 0 {
					errorLine(at, id, w.scope, warn, fmt.Sprintf("req-%d", req))
				}
				rel := at.Sub(deploy)
				for _, r := range tc.rates {
					if r.sc == w.scope && slices.Contains(r.wikis, w.name) && rel >= r.from && rel < r.to && req%r.oneIn == 0 {
						errorLine(at, id, w.scope, r.e, fmt.Sprintf("req-%d", req))
					}
				}
			}
		}
		for ; next < len(errs) && deploy.Add(errs[next].at).Before(b0.Add(bw)); next++ {
			e := errs[next]
			errorLine(deploy.Add(e.at), s.m.ByNameString(e.wiki), e.scope, e, e.req)
		}
		s.w.Flush()
		if bucket%6 == 5 { // evaluate once a minute, as the pipeline does after a batch
			s.store.Sync()
			evaluate(s.store.Watermark())
		}
	}
	s.store.Sync()
	evaluate(end.UnixNano())
	return fired
}
