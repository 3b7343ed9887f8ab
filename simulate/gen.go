package simulate

// This file is the generator: the time-step loop and the one request it
// draws, with the errors that request logs, in the order they happen. Its
// length is one request's life read top to bottom; the wire formats are in
// records.go and the scenarios in scenario.go.

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// step is the simulation's time step: arrivals are drawn per step at the
// step's rate, and with Speed > 0 pacing happens between steps.
const step = int64(100 * time.Millisecond)

// minSleep is the shortest pacing sleep: shorter debts are carried over, so
// timer overhead does not slow fast replays.
const minSleep = 2 * time.Millisecond

// What the MediaWiki images run and serve.
const (
	runSingleJobPath = "/rpc/RunSingleJob.php"
	phpVersion       = "8.1.31"
	phpProgram       = "php8.1-fpm"
	fpmHandler       = "proxy:unix:/run/shared/fpm-www.sock|fcgi://localhost"
)

type generator struct {
	p    *plan
	cfg  *resolved
	sink Sink
	clk  clock

	rng    *rand.Rand // traffic
	podRNG *rand.Rand // rollouts: a separate stream so deploys do not shift traffic draws

	wikis       []wikiInfo // by wiki ID
	testwiki    *wikiInfo
	twShare     float64 // probability that an arrival is a testwiki request
	versions    []versionInfo
	verIdx      map[string]int
	pretrainVer int
	deps        [numDeps]deployment
	kinds       []pathKind
	kindTab     *alias
	bgDefs      []*errorDef
	bgTab       *alias
	bgRate      float64
	nextDeploy  int

	// Output: records of the current batch point into arena by offsets
	// until the batch is handed to the sink.
	recs    []Record
	spans   []span
	arena   []byte
	pending pendingHeap
	free    [][]byte
	seq     uint64
	ts      timeCache

	req  request
	errs []errEmit
}

type span struct{ k, v, e int }

func newGenerator(p *plan, sink Sink, clk clock) *generator {
	cfg := &p.cfg
	g := &generator{
		p: p, cfg: cfg, sink: sink, clk: clk,
		rng:    rand.New(rand.NewPCG(uint64(cfg.Seed), trafficStream)),
		podRNG: rand.New(rand.NewPCG(uint64(cfg.Seed), podStream)),
		deps:   newDeployments(),
		kinds:  pathKinds(),
		recs:   make([]Record, 0, cfg.BatchSize),
		spans:  make([]span, 0, cfg.BatchSize),
	}
	g.wikis = make([]wikiInfo, p.wikis.Len()+1)
	g.verIdx = map[string]int{}
	newest := ""
	for _, w := range p.wikis.Wikis() {
		wi := newWikiInfo(&w)
		v := strings.TrimPrefix(w.Version, "php-")
		wi.ver = g.version(v)
		if versionLess(newest, v) {
			newest = v
		}
		g.wikis[w.ID] = wi
	}
	g.pretrainVer = g.version(pretrainVersion(newest))
	g.testwiki = &g.wikis[p.testwiki]
	g.twShare = cfg.TestwikiRate / (cfg.Rate + cfg.TestwikiRate)
	for i := range g.deps {
		if i == depPretrainDebug {
			// Its own stream: adding the release left every other
			// scenario's pods as they were.
			g.deps[i].rollout(rand.New(rand.NewPCG(uint64(cfg.Seed), debugStream)), cfg.DCs)
			continue
		}
		g.deps[i].rollout(g.podRNG, cfg.DCs)
	}

	ws := make([]float64, len(g.kinds))
	items := make([]int32, len(g.kinds))
	for i, k := range g.kinds {
		ws[i], items[i] = k.weight, int32(i)
	}
	g.kindTab = newAlias(items, ws)

	g.bgDefs = backgroundCatalogue()
	ws = make([]float64, len(g.bgDefs))
	items = make([]int32, len(g.bgDefs))
	for i, d := range g.bgDefs {
		ws[i], items[i] = d.rate, int32(i)
		g.bgRate += d.rate
	}
	g.bgTab = newAlias(items, ws)
	return g
}

// version returns the index of a version name, adding it if new.
func (g *generator) version(name string) int {
	if i, ok := g.verIdx[name]; ok {
		return i
	}
	i := len(g.versions)
	g.verIdx[name] = i
	g.versions = append(g.versions, newVersion(name))
	return i
}

func (g *generator) run(ctx context.Context) error {
	start, end := g.p.start, g.p.end
	wallStart := g.clk.Now()
	for t0 := start; t0 < end; t0 += step {
		if err := ctx.Err(); err != nil {
			return err
		}
		t1 := min(t0+step, end)
		g.applyDeploys(t0)
		// Poisson arrivals at the step's rate: exponential gaps, the rate
		// held constant within the step (it varies over hours).
		perNS := (g.cfg.Rate + g.cfg.TestwikiRate) * dailyFactorAt(t0+(t1-t0)/2) / 1e9
		off := 0.0
		for {
			off += g.rng.ExpFloat64() / perNS
			t := t0 + int64(off)
			if off >= float64(t1-t0) || t >= t1 {
				break
			}
			if err := g.request(ctx, t); err != nil {
				return err
			}
		}
		if err := g.releasePending(ctx, t1); err != nil {
			return err
		}
		if g.cfg.Speed > 0 {
			target := wallStart.Add(time.Duration(float64(t1-start) / g.cfg.Speed))
			if d := target.Sub(g.clk.Now()); d >= minSleep {
				// Hand over what is ready before sleeping, so a paced
				// consumer sees events close to their time.
				if err := g.flush(ctx); err != nil {
					return err
				}
				if err := g.clk.Sleep(ctx, d); err != nil {
					return err
				}
			}
		}
	}
	// Errors logged after the end (a slow request's) are not part of the run.
	g.pending = g.pending[:0]
	return g.flush(ctx)
}

func dailyFactorAt(ns int64) float64 { return dailyFactor(time.Unix(0, ns)) }

func (g *generator) applyDeploys(t int64) {
	for g.nextDeploy < len(g.p.deploys) && g.p.deploys[g.nextDeploy].at <= t {
		d := &g.p.deploys[g.nextDeploy]
		g.nextDeploy++
		if d.Scope == "pretrain" {
			g.pretrainVer = g.version(d.Version)
			for _, i := range []int{depPretrainMain, depPretrainCanary, depPretrainJobrunner} {
				g.deps[i].rollout(g.podRNG, g.cfg.DCs)
			}
			continue
		}
		vi := g.version(d.Version)
		for _, id := range g.p.wikis.InGroup(d.Group) {
			g.wikis[id].ver = vi
		}
		// One image carries every branch: a train deploy rolls out all
		// train deployments.
		for _, i := range []int{depWeb, depAPIExt, depAPIInt, depParsoid, depJobrunner} {
			g.deps[i].rollout(g.podRNG, g.cfg.DCs)
		}
	}
}

// request is one served request, reused.
type request struct {
	t        int64
	w        *wikiInfo
	pretrain bool
	kind     *pathKind
	method   string
	dc       int
	dep      int
	pod      *pod
	reqID    []byte
	debug    bool // served by mw-pretrain's debug release (the debug header)
	path     []byte
	query    []byte
	title    string
	pageID   uint32
	revID    uint32
	referrer bool // a "https://<host>/wiki/<title>" referrer, else none
	status   int
	durUS    int64
	bytes    int64
}

// errEmit is one error to log for a request.
type errEmit struct {
	def *errorDef
	inc *plannedIncident
}

func (g *generator) request(ctx context.Context, t int64) error {
	g.applyDeploys(t)
	rng := g.rng
	r := &g.req
	r.t = t
	if rng.Float64() < g.twShare {
		r.w, r.pretrain = g.testwiki, true
	} else {
		r.w, r.pretrain = &g.wikis[g.p.model.train.draw(rng)], false
	}
	r.debug = false
	for _, inc := range g.p.incidents {
		if inc.reroute && t >= inc.onset && t < inc.end && inc.wikis[r.w.id] {
			r.pretrain = true
		}
		if inc.debug && t >= inc.onset && t < inc.end && inc.wikis[r.w.id] && !r.pretrain && rng.Float64() < inc.debugShare {
			r.pretrain, r.debug = true, true
		}
	}
	k := &g.kinds[g.kindTab.draw(rng)]
	r.kind = k
	r.method = k.method
	if k.postShare > 0 && rng.Float64() < k.postShare {
		r.method = "POST"
	}
	r.dc = rng.IntN(len(g.cfg.DCs))
	if r.debug {
		r.dep, r.pod = depPretrainDebug, &g.deps[depPretrainDebug].pods[r.dc][0]
	} else if r.pretrain {
		// canary has 1 replica, routed via main's 2: a third of the traffic.
		if i := rng.IntN(3); i < 2 {
			r.dep, r.pod = depPretrainMain, &g.deps[depPretrainMain].pods[r.dc][i]
		} else {
			r.dep, r.pod = depPretrainCanary, &g.deps[depPretrainCanary].pods[r.dc][0]
		}
	} else {
		r.dep = k.dep
		pods := g.deps[r.dep].pods[r.dc]
		r.pod = &pods[rng.IntN(len(pods))]
	}
	r.reqID = appendUUID(r.reqID[:0], rng.Uint64(), rng.Uint64())
	g.buildURL(r)

	// Errors first: an uncaught exception decides the response status.
	g.errs = g.errs[:0]
	forced := 0
	if k.php {
		if rng.Float64() < g.bgRate {
			g.errs = append(g.errs, errEmit{def: g.bgDefs[g.bgTab.draw(rng)]})
		}
		for _, inc := range g.p.incidents {
			if t < inc.onset || t >= inc.end || !inc.wikis[r.w.id] || !inc.scope.matches(r.pretrain) || inc.debug != r.debug {
				continue
			}
			if (inc.maxHits > 0 && inc.hits >= inc.maxHits) || (t >= inc.pauseFrom && t < inc.pauseTo) {
				continue
			}
			if rng.Float64() < inc.p {
				inc.hits++
				if inc.status != 0 {
					forced = inc.status
				}
				if inc.def == nil {
					continue
				}
				for range max(1, inc.repeat) {
					g.errs = append(g.errs, errEmit{def: inc.def, inc: inc})
				}
			}
		}
		for _, e := range g.errs {
			if e.def.role == roleRequest && e.def.status != 0 && !(e.inc != nil && e.inc.onTrainJobrs) {
				forced = e.def.status
			}
		}
	}
	g.responseShape(r, forced)

	if err := g.releasePending(ctx, t+1); err != nil {
		return err
	}
	if err := g.emitAccess(ctx, r); err != nil {
		return err
	}
	for i := range g.errs {
		g.queueError(r, &g.errs[i])
	}
	return nil
}

func (m scopeMatch) matches(pretrain bool) bool {
	switch m {
	case matchTrain:
		return !pretrain
	case matchPretrain:
		return pretrain
	default:
		return true
	}
}

// responseShape draws status, duration and size.
func (g *generator) responseShape(r *request, forced int) {
	rng := g.rng
	k := r.kind
	switch {
	case forced != 0:
		r.status = forced
	case !k.php:
		u := rng.Float64()
		switch {
		case u < 0.60:
			r.status = 200
		case u < 0.98:
			r.status = 304
		default:
			r.status = 404
		}
	default:
		u := rng.Float64()
		switch {
		case u < 0.910:
			r.status = 200
		case u < 0.955:
			r.status = 304
		case u < 0.975:
			r.status = 301
		case u < 0.980:
			r.status = 302
		case u < 0.999:
			r.status = 404
		case u < 0.9996:
			r.status = 500
		default:
			r.status = 503
		}
	}
	dur := k.durMedUS * math.Exp(k.durSigma*rng.NormFloat64())
	size := k.bytesMed * math.Exp(k.bytesSigma*rng.NormFloat64())
	switch {
	case r.status == 304 || r.status == 301 || r.status == 302:
		dur *= 0.2
		size = 0
	case r.status >= 500:
		dur *= 3
		size = 1800 + size*0.01
	case r.status == 404:
		size *= 0.3
	}
	r.durUS = int64(min(dur, 60e6)) + 50
	r.bytes = int64(size)
}

// buildURL draws the request's path and query for its kind.
func (g *generator) buildURL(r *request) {
	rng := g.rng
	titles := pageTitles()
	r.title = titles[rng.IntN(len(titles))]
	r.pageID = 1 + rng.Uint32N(70_000_000)
	r.revID = 1 + rng.Uint32N(1_300_000_000)
	r.referrer = rng.Float64() < 0.35
	p, q := r.path[:0], r.query[:0]
	switch r.kind.id {
	case kindPageview:
		p = append(append(p, "/wiki/"...), r.title...)
	case kindIndexAction:
		p = append(p, "/w/index.php"...)
		q = append(append(q, "?title="...), r.title...)
		actions := [...]string{"&action=history", "&action=raw&ctype=text/javascript", "&action=info", "&action=edit"}
		q = append(q, actions[rng.IntN(len(actions))]...)
	case kindLoad:
		p = append(p, "/w/load.php"...)
		if rng.IntN(2) == 0 {
			q = append(q, "?lang=en&modules=startup&only=scripts&raw=1&skin=vector-2022"...)
		} else {
			q = append(q, "?lang=en&modules=ext.cite.styles%7Cskins.vector.styles.legacy&only=styles&skin=vector-2022"...)
		}
	case kindStatic:
		statics := [...]string{"/static/images/icons/wikipedia.png", "/static/favicon/wikipedia.ico", "/static/images/mobile/copyright/wikipedia-wordmark-en.svg"}
		p = append(p, statics[rng.IntN(len(statics))]...)
	case kindAPI:
		p = append(p, "/w/api.php"...)
		switch rng.IntN(3) {
		case 0:
			q = append(append(q, "?action=query&format=json&prop=pageprops&titles="...), r.title...)
		case 1:
			q = append(q, "?action=query&format=json&list=recentchanges&rclimit=50&formatversion=2"...)
		default:
			q = append(append(q, "?action=parse&format=json&page="...), r.title...)
		}
	case kindREST:
		p = append(append(append(p, "/w/rest.php/v1/page/"...), r.title...), "/bare"...)
	case kindAPIInt:
		p = append(p, "/w/api.php"...)
		q = append(q, "?action=query&format=json&meta=siteinfo&formatversion=2"...)
	case kindParsoid:
		p = appendParsoidPath(p, r)
	case kindSubmit:
		p = append(p, "/w/index.php"...)
		q = append(append(append(q, "?title="...), r.title...), "&action=submit"...)
	}
	r.path, r.query = p, q
}

func appendParsoidPath(p []byte, r *request) []byte {
	p = append(p, "/w/rest.php/"...)
	p = append(p, r.w.host...)
	p = append(p, "/v3/page/pagebundle/"...)
	p = append(p, r.title...)
	p = append(p, '/')
	return strconv.AppendUint(p, uint64(r.revID), 10)
}

// emitAccess appends the request's access-log record to the batch.
func (g *generator) emitAccess(ctx context.Context, r *request) error {
	ko := len(g.arena)
	g.arena = append(g.arena, r.reqID...)
	vo := len(g.arena)
	g.arena = g.appendAccess(g.arena, r)
	return g.push(ctx, g.cfg.Topics.AccessLog, r.t, span{ko, vo, len(g.arena)})
}

func (g *generator) push(ctx context.Context, topic string, t int64, s span) error {
	g.recs = append(g.recs, Record{Topic: topic, Time: time.Unix(0, t).UTC()})
	g.spans = append(g.spans, s)
	if len(g.recs) >= g.cfg.BatchSize {
		return g.flush(ctx)
	}
	return nil
}

// flush hands the batch to the sink.
func (g *generator) flush(ctx context.Context) error {
	if len(g.recs) == 0 {
		return nil
	}
	for i, s := range g.spans {
		g.recs[i].Key = g.arena[s.k:s.v:s.v]
		g.recs[i].Value = g.arena[s.v:s.e:s.e]
	}
	err := g.sink(ctx, g.recs)
	clear(g.recs) // drop references into the arena before it is reused
	g.recs, g.spans, g.arena = g.recs[:0], g.spans[:0], g.arena[:0]
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	return nil
}

// queueError encodes an error record and queues it until simulated time
// reaches its timestamp, so the sink sees records in time order.
func (g *generator) queueError(r *request, e *errEmit) {
	d := e.def
	rng := g.rng
	em := errRecord{def: d, r: r, dc: r.dc, dep: r.dep, pod: r.pod, entry: r.kind.entry}
	em.url, em.query = r.path, r.query
	em.method = r.method
	em.server = r.w.host
	em.referrer = r.referrer
	em.reqID = r.reqID
	var delay int64
	switch {
	case d.role == roleJob:
		em.dep = depJobrunner
		if r.pretrain && (e.inc == nil || !e.inc.onTrainJobrs) {
			em.dep = depPretrainJobrunner
		}
		em.dc = 0 // jobs run in the primary DC
		em.entry = entryJob
		em.url, em.query, em.method, em.referrer = []byte(runSingleJobPath), nil, "POST", false
		em.server = g.deps[em.dep].vhost
		em.reqID = appendUUID(make([]byte, 0, 36), rng.Uint64(), rng.Uint64())
		delay = int64(500*time.Millisecond) + rng.Int64N(int64(20*time.Second))
	case d.role == roleParsoid:
		em.dep = depParsoid
		if r.pretrain {
			em.dep = depPretrainMain
		}
		em.entry = entryRest
		em.url, em.query, em.method, em.referrer = appendParsoidPath(nil, r), nil, "GET", false
		em.reqID = appendUUID(make([]byte, 0, 36), rng.Uint64(), rng.Uint64())
		delay = int64(100*time.Millisecond) + rng.Int64N(int64(2*time.Second))
	default:
		delay = rng.Int64N(r.durUS*1000 + 1) // logged while the request runs
	}
	if em.dep != r.dep || em.dc != r.dc {
		pods := g.deps[em.dep].pods[em.dc]
		em.pod = &pods[rng.IntN(len(pods))]
	}
	em.ver = r.w.ver
	if g.deps[em.dep].pretrain {
		em.ver = g.pretrainVer
	}
	em.t = r.t + delay
	em.c = errCtx{w: r.w, n1: rng.Uint32(), n2: rng.Uint32()}

	var buf []byte
	if n := len(g.free); n > 0 {
		buf, g.free = g.free[n-1][:0], g.free[:n-1]
	}
	buf = g.appendError(buf, &em)
	g.seq++
	g.pending.push(pendingRec{t: em.t, seq: g.seq, dc: em.dc, keyLen: len(em.reqID), buf: append(buf, em.reqID...)})
}

// releasePending moves queued errors with time < upTo into the batch.
func (g *generator) releasePending(ctx context.Context, upTo int64) error {
	for len(g.pending) > 0 && g.pending[0].t < upTo {
		pr := g.pending.pop()
		ko := len(g.arena)
		n := len(pr.buf) - pr.keyLen
		g.arena = append(g.arena, pr.buf[n:]...)
		vo := len(g.arena)
		g.arena = append(g.arena, pr.buf[:n]...)
		g.free = append(g.free, pr.buf)
		if err := g.push(ctx, g.cfg.Topics.ErrorTopics[pr.dc], pr.t, span{ko, vo, len(g.arena)}); err != nil {
			return err
		}
	}
	return nil
}

// pendingRec is an encoded error waiting for its time. buf holds the value
// followed by the key (keyLen bytes).
type pendingRec struct {
	t      int64
	seq    uint64
	dc     int
	keyLen int
	buf    []byte
}

// pendingHeap is a min-heap by (t, seq); seq makes equal times deterministic.
type pendingHeap []pendingRec

func (h pendingHeap) less(i, j int) bool {
	return h[i].t < h[j].t || h[i].t == h[j].t && h[i].seq < h[j].seq
}

func (h *pendingHeap) push(x pendingRec) {
	*h = append(*h, x)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s.less(i, parent) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *pendingHeap) pop() pendingRec {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = pendingRec{}
	s = s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s.less(l, m) {
			m = l
		}
		if r < len(s) && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// errRecord is everything the error encoder needs.
type errRecord struct {
	def        *errorDef
	r          *request
	t          int64
	dc, dep    int
	pod        *pod
	entry      entry
	ver        int
	url, query []byte
	method     string
	server     string
	referrer   bool
	reqID      []byte
	c          errCtx
}
