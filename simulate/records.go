package simulate

import (
	"strconv"
)

// Request kinds: what a request asks for, which deployment serves it on the
// train fleet, and its response shape.
const (
	kindPageview = iota
	kindIndexAction
	kindLoad
	kindStatic
	kindAPI
	kindREST
	kindAPIInt
	kindParsoid
	kindSubmit
)

type pathKind struct {
	id          int
	weight      float64
	dep         int // train deployment
	method      string
	postShare   float64 // share of POSTs
	entry       entry
	php         bool // served by PHP-FPM (labels.handler proxy:unix:…); static files are not
	contentType string
	userAgent   string // "" = a browser's
	durMedUS    float64
	durSigma    float64
	bytesMed    float64
	bytesSigma  float64
}

func pathKinds() []pathKind {
	const html, js, json = "text/html; charset=UTF-8", "text/javascript; charset=utf-8", "application/json; charset=utf-8"
	return []pathKind{
		{id: kindPageview, weight: 0.52, dep: depWeb, method: "GET", entry: entryIndex, php: true, contentType: html, durMedUS: 90e3, durSigma: 1.0, bytesMed: 60e3, bytesSigma: 0.8},
		{id: kindIndexAction, weight: 0.06, dep: depWeb, method: "GET", entry: entryIndex, php: true, contentType: html, durMedUS: 150e3, durSigma: 1.0, bytesMed: 40e3, bytesSigma: 1.0},
		{id: kindLoad, weight: 0.14, dep: depWeb, method: "GET", entry: entryLoad, php: true, contentType: js, durMedUS: 15e3, durSigma: 0.8, bytesMed: 20e3, bytesSigma: 1.0},
		{id: kindStatic, weight: 0.03, dep: depWeb, method: "GET", contentType: "image/png", durMedUS: 1e3, durSigma: 0.5, bytesMed: 4e3, bytesSigma: 0.7},
		{id: kindAPI, weight: 0.13, dep: depAPIExt, method: "GET", postShare: 0.1, entry: entryAPI, php: true, contentType: json, durMedUS: 60e3, durSigma: 1.1, bytesMed: 2e3, bytesSigma: 1.2},
		{id: kindREST, weight: 0.04, dep: depAPIExt, method: "GET", entry: entryRest, php: true, contentType: json, durMedUS: 40e3, durSigma: 1.0, bytesMed: 8e3, bytesSigma: 1.0},
		{id: kindAPIInt, weight: 0.05, dep: depAPIInt, method: "GET", postShare: 0.3, entry: entryAPI, php: true, contentType: json, userAgent: "wikimedia/multi-http-client v1.1", durMedUS: 30e3, durSigma: 0.9, bytesMed: 3e3, bytesSigma: 0.8},
		{id: kindParsoid, weight: 0.025, dep: depParsoid, method: "GET", entry: entryRest, php: true, contentType: html, userAgent: "ChangePropagation/WMF", durMedUS: 600e3, durSigma: 1.2, bytesMed: 150e3, bytesSigma: 0.9},
		{id: kindSubmit, weight: 0.005, dep: depWeb, method: "POST", entry: entryIndex, php: true, contentType: html, durMedUS: 900e3, durSigma: 0.8, bytesMed: 1e3, bytesSigma: 0.5},
	}
}

// pageTitles are URL paths' titles; they need no JSON escaping.
func pageTitles() []string {
	return []string{
		"Main_Page", "Special:Search", "Special:RecentChanges", "Special:Watchlist", "United_States",
		"Albert_Einstein", "Python_(programming_language)", "World_War_II", "Taylor_Swift", "India",
		"2026_FIFA_World_Cup", "Climate_change", "The_Beatles", "Bitcoin", "Tokyo", "M%C3%BCnchen",
		"%E6%9D%B1%E4%BA%AC", "Wikipedia:Village_pump", "User:Example", "Template:Cite_web",
		"Module:Citation/CS1", "Category:Living_people", "List_of_sovereign_states", "Paris",
		"Barack_Obama", "Photosynthesis", "COVID-19_pandemic", "Ancient_Rome", "Moon", "Chess",
		"Special:Contributions/Example", "Help:Contents",
	}
}

func browserAgents() []string {
	return []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
		"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
		"WikipediaApp/7.7.3 (Android 14; Phone) Google Play",
		"Pywikibot/9.5.0 (g1) requests/2.32.3 Python/3.12.7",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
	}
}

// appendAccess encodes r as the httpd ECS access log arrives on Kafka:
// rsyslog's nested envelope (host, orchestrator, labels, ecs, service)
// followed by httpd's flat dotted keys, so a flat "labels.handler"
// coexists with the "labels" object (docs/domain.md section 4).
func (g *generator) appendAccess(b []byte, r *request) []byte {
	rng := g.rng
	d := &g.deps[r.dep]
	b = append(b, `{"host":{"name":"`...)
	b = append(b, r.pod.name...)
	b = append(b, `"},"orchestrator":{"type":"kubernetes","cluster":{"name":"`...)
	b = append(b, g.cfg.DCs[r.dc]...)
	b = append(b, `"},"namespace":"`...)
	b = append(b, d.namespace...)
	b = append(b, `","resource":{"name":"`...)
	b = append(b, r.pod.name...)
	b = append(b, `","type":"pod"}},"labels":{"deployment":"`...)
	b = append(b, d.namespace...)
	b = append(b, `","release":"`...)
	b = append(b, d.release...)
	b = append(b, `"},"ecs":{"version":"1.11.0"},"service":{"type":"apache2"},"timestamp":"`...)
	b = g.ts.appendSecond(b, r.t)
	b = append(b, `","labels.httpd_server_name":"`...)
	b = append(b, r.w.vhost...)
	b = append(b, `","labels.handler":"`...)
	if r.kind.php {
		b = append(b, fpmHandler...)
	} else {
		b = append(b, '-')
	}
	// Envoy terminates TLS in the pod, so httpd's peer is localhost.
	b = append(b, `","client.ip":"127.0.0.1","event.kind":"event","event.category":["network","web"],"event.type":["access","connection"],"event.outcome":"unknown","event.dataset":"apache.access","event.duration":`...)
	b = strconv.AppendInt(b, r.durUS, 10)
	b = append(b, `,"http.request.method":"`...)
	b = append(b, r.method...)
	b = append(b, `","http.request.referrer":"`...)
	if r.referrer {
		b = append(b, "https://"...)
		b = append(b, r.w.host...)
		b = append(b, "/wiki/"...)
		b = append(b, r.title...)
	} else {
		b = append(b, '-')
	}
	b = append(b, `","http.request.headers.x_forwarded_for":"`...)
	ipStart := len(b)
	b = appendClientIP(b, rng.Uint32(), r.kind.userAgent != "")
	ip := b[ipStart:]
	b = append(b, `","http.request.headers.accept_language":"`...)
	b = append(b, r.w.lang...)
	b = append(b, `","http.request.headers.x_analytics":"`...)
	if r.kind.id == kindPageview && r.status == 200 {
		b = append(b, "ns=0;page_id="...)
		b = strconv.AppendUint(b, uint64(r.pageID), 10)
		b = append(b, ";rev_id="...)
		b = strconv.AppendUint(b, uint64(r.revID), 10)
		b = append(b, ';')
	}
	b = append(b, "https=1;client_port="...)
	b = strconv.AppendUint(b, uint64(1024+rng.IntN(64511)), 10)
	b = append(b, `","http.request.headers.x_request_id":"`...)
	b = append(b, r.reqID...)
	b = append(b, `","http.request.headers.x_client_ip":"`...)
	b = append(b, ip...)
	b = append(b, `","http.response.headers.content_type":"`...)
	b = append(b, r.kind.contentType...)
	b = append(b, `","http.response.status_code":`...)
	b = strconv.AppendInt(b, int64(r.status), 10)
	b = append(b, `,"http.response.bytes":`...)
	b = strconv.AppendInt(b, r.bytes, 10)
	b = append(b, `,"http.response.headers.user":"-","server.ip":"`...)
	b = append(b, r.pod.ip...)
	b = append(b, `","source.ip":"127.0.0.1","url.full":"http://`...)
	// Paths and queries are built from JSON-safe parts (TestJSONSafeParts),
	// so the hot path appends them raw.
	b = append(b, r.w.host...)
	b = append(b, r.path...)
	b = append(b, r.query...)
	b = append(b, `","url.domain":"`...)
	b = append(b, r.w.host...)
	b = append(b, `","url.path":"`...)
	b = append(b, r.path...)
	b = append(b, `","url.query":"`...)
	b = append(b, r.query...)
	b = append(b, `","user.name":"-","user_agent.original":"`...)
	if ua := r.kind.userAgent; ua != "" {
		b = append(b, ua...)
	} else {
		agents := browserAgents()
		b = append(b, agents[rng.IntN(len(agents))]...)
	}
	return append(b, `"}`...)
}

// appendClientIP appends a client address from the documentation ranges
// (RFC 5737, RFC 3849), or an internal one for service-to-service calls.
func appendClientIP(b []byte, n uint32, internal bool) []byte {
	if internal {
		b = append(b, "10.64."...)
		b = strconv.AppendUint(b, uint64(n>>8&0x3f), 10)
		b = append(b, '.')
		return strconv.AppendUint(b, uint64(1+n&0xff%254), 10)
	}
	switch n % 8 {
	case 0:
		b = append(b, "2001:db8:"...)
		b = strconv.AppendUint(b, uint64(n>>16), 16)
		b = append(b, "::"...)
		return strconv.AppendUint(b, uint64(n>>4&0xfff), 16)
	case 1, 2, 3:
		b = append(b, "203.0.113."...)
	case 4, 5:
		b = append(b, "198.51.100."...)
	default:
		b = append(b, "192.0.2."...)
	}
	return strconv.AppendUint(b, uint64(1+(n>>8)%254), 10)
}

// appendError encodes an error as it arrives on k8s-mw-<dc>: the rsyslog
// syslog_cee wrapper (timestamp, logsource, host, program, severity,
// facility, kubernetes{…}) spliced with the JSON MediaWiki logged
// (LogstashFormatter + WikiProcessor + wmf-config processor fields). The
// splice writes "host" twice, on purpose: that is what production sends.
func (g *generator) appendError(b []byte, e *errRecord) []byte {
	d := e.def
	dep := &g.deps[e.dep]
	ver := &g.versions[e.ver]
	levelName, severity := d.levelNames()
	program, facility := "mediawiki", "user"
	if d.fatal {
		program, facility = phpProgram, "daemon"
	}
	b = append(b, `{"timestamp":"`...)
	b = g.ts.appendSecond(b, e.t)
	b = append(b, `+00:00", "logsource":"`...)
	b = append(b, e.pod.name...)
	b = append(b, `", "host":"`...)
	b = append(b, e.pod.name...)
	b = append(b, `", "program":"`...)
	b = append(b, program...)
	b = append(b, `", "severity":"`...)
	b = append(b, severity...)
	b = append(b, `", "facility":"`...)
	b = append(b, facility...)
	b = append(b, `", "kubernetes": {"host":"`...)
	b = append(b, e.pod.node...)
	b = append(b, `", "namespace_name":"`...)
	b = append(b, dep.namespace...)
	b = append(b, `", "pod_name":"`...)
	b = append(b, e.pod.name...)
	b = append(b, `", "labels": {"deployment":"`...)
	b = append(b, dep.namespace...)
	b = append(b, `", "release":"`...)
	b = append(b, dep.release...)
	b = append(b, `"}}, `...)
	rd := d.render(e.ver, ver.root, e.entry)
	if d.fatal {
		return g.appendFatal(b, e, rd)
	}
	b = append(b, `"@timestamp":"`...)
	b = g.ts.appendSecond(b, e.t)
	b = appendFraction(b, e.t, 6)
	b = append(b, `+00:00","@version":1,"host":"`...)
	b = append(b, e.pod.name...)
	b = append(b, `","message":"`...)
	switch {
	case d.prefixed:
		b = append(b, '[')
		b = append(b, e.reqID...)
		b = append(b, "] "...)
		b = appendEscaped(b, e.url)
		b = appendEscaped(b, e.query)
		b = append(b, "   "...)
		b = appendEscaped(b, d.head)
	case d.msg != nil:
		b = d.msg(b, &e.c)
	default:
		b = appendEscaped(b, d.text)
	}
	b = append(b, `","type":"mediawiki","channel":"`...)
	b = append(b, d.channel...)
	b = append(b, `","level":"`...)
	b = append(b, levelName...)
	b = append(b, `","monolog_level":`...)
	b = strconv.AppendInt(b, int64(d.level), 10)
	b = append(b, `,"url":"`...)
	b = appendEscaped(b, e.url)
	b = appendEscaped(b, e.query)
	b = append(b, `","http_method":"`...)
	b = append(b, e.method...)
	b = append(b, `","server":"`...)
	b = append(b, e.server...)
	b = append(b, `","referrer":`...)
	if e.referrer {
		b = append(b, `"https://`...)
		b = append(b, e.r.w.host...)
		b = append(b, "/wiki/"...)
		b = appendEscaped(b, e.r.title)
		b = append(b, '"')
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"phpversion":"`+phpVersion+`","servergroup":"`...)
	b = append(b, dep.servergroup...)
	b = append(b, `","normalized_message":"`...)
	b = appendEscaped(b, d.normalized)
	b = append(b, `","shard":"`...)
	b = append(b, e.c.w.shard...)
	b = append(b, `","wiki":"`...)
	b = append(b, e.c.w.dbname...)
	b = append(b, `","mwversion":"`...)
	b = append(b, ver.name...)
	b = append(b, `","reqId":"`...)
	b = append(b, e.reqID...)
	b = append(b, '"')
	if d.ctx != nil {
		b = d.ctx(b, &e.c)
	}
	if d.class != "" {
		b = append(b, `,"exception":{"class":"`...)
		b = appendEscaped(b, d.class)
		b = append(b, `","message":"`...)
		b = appendEscaped(b, d.excMessage())
		b = append(b, `","code":0,"file":"`...)
		b = append(b, rd.file...)
		b = append(b, `","trace":"`...)
		b = append(b, rd.trace...)
		b = append(b, `"}`...)
	}
	if d.prefixed {
		b = append(b, `,"exception_url":"`...)
		b = appendEscaped(b, e.url)
		b = appendEscaped(b, e.query)
		b = append(b, `","caught_by":"`...)
		b = append(b, d.caughtBy...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendFatal writes the body php-wmerrors logs for a fatal error
// (operations-puppet php7-fatal-error.php): no wiki and no mwversion, the
// version only in the file path; field order as in the Kafka sample.
func (g *generator) appendFatal(b []byte, e *errRecord, rd *renderedDef) []byte {
	d := e.def
	b = append(b, `"exception":{"message":"`...)
	b = appendEscaped(b, d.text)
	b = append(b, `","trace":"`...)
	b = append(b, rd.trace...)
	b = append(b, `","file":"`...)
	b = append(b, rd.file...)
	b = append(b, `"},"type":"mediawiki","@timestamp":"`...)
	b = g.ts.appendSecond(b, e.t)
	b = appendFraction(b, e.t, 3)
	b = append(b, `Z","url":"`...)
	b = appendEscaped(b, e.url)
	b = appendEscaped(b, e.query)
	b = append(b, `","normalized_message":"`...)
	b = appendEscaped(b, d.normalized)
	b = append(b, `","reqId":"`...)
	b = append(b, e.reqID...)
	b = append(b, `","caught_by":"php-wmerrors","level":"ERROR","servergroup":"`...)
	b = append(b, g.deps[e.dep].servergroup...)
	b = append(b, `","message":"[`...)
	b = append(b, e.reqID...)
	b = append(b, `] PHP Fatal error: `...)
	b = appendEscaped(b, d.text)
	b = append(b, " in "...)
	b = append(b, rd.file...)
	b = append(b, `","server":"`...)
	b = append(b, e.server...)
	b = append(b, `","http_method":"`...)
	b = append(b, e.method...)
	return append(b, `","phpversion":"`+phpVersion+`","channel":"exception"}`...)
}
