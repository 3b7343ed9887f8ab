package decode

import (
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// The MediaWiki httpd access log (topic mediawiki.httpd.accesslog: ECS
// 1.7.0 as Wikimedia's httpd log format defines it; docs/domain.md section
// 4). httpd writes flat dotted ECS keys, every value quoted (the format's
// field map is rendered as JSON strings), inside rsyslog's envelope, which nests host.name,
// orchestrator{…} and labels{deployment, release}:
//
//	{"host":{"name":"mw-web.eqiad.main-5f6b8d7c9d-x7k2p"},
//	 "orchestrator":{"namespace":"mw-web","resource":{"name":"…"}},
//	 "labels":{"deployment":"mw-web","release":"main"},
//	 "url.domain":"en.wikipedia.org","http.response.status_code":"200",
//	 "event.duration":"35012","labels.handler":"proxy:unix:…",
//	 "timestamp":"2026-08-21T10:00:00", …}
//
// Other ECS producers nest the same fields ("url":{"domain":…}); the
// scanner's dotted paths make both one case. This is the hot path: it
// allocates nothing.

const (
	alTimestamp = iota
	alAtTimestamp
	alDomain
	alStatus
	alDuration
	alDeployment
	alRelease
	alNamespace
	alPod
	alNumSlots
)

func accessLogSlot(p []byte) int {
	switch string(p) {
	case "url.domain":
		return alDomain
	case "http.response.status_code":
		return alStatus
	case "event.duration":
		return alDuration
	case "timestamp":
		return alTimestamp
	case "@timestamp":
		return alAtTimestamp
	case "labels.deployment", "kubernetes.labels.deployment":
		return alDeployment
	case "labels.release", "kubernetes.labels.release":
		return alRelease
	case "orchestrator.namespace", "kubernetes.namespace_name":
		return alNamespace
	case "orchestrator.resource.name", "kubernetes.pod_name":
		return alPod
	case "url", "http", "http.response", "event", "labels", "kubernetes", "kubernetes.labels",
		"orchestrator", "orchestrator.resource":
		return slotObject
	}
	return slotNone
}

func (d *Decoder) decodeAccessLog(ev *event.Event, kt int64) error {
	ns, err := d.accessLogTime(kt)
	if err != nil {
		return err
	}
	wiki, status, err := d.hostAndStatus(alDomain, alStatus)
	if err != nil {
		return err
	}
	dur, _, err := d.number(alDuration)
	if err != nil {
		return err
	}
	deployment, err := d.nonEmpty(alDeployment)
	if err != nil {
		return err
	}
	release, err := d.nonEmpty(alRelease)
	if err != nil {
		return err
	}
	namespace, err := d.nonEmpty(alNamespace)
	if err != nil {
		return err
	}
	pod, err := d.nonEmpty(alPod)
	if err != nil {
		return err
	}
	ev.Time = ns
	ev.Kind = event.KindRequest
	ev.Wiki = wiki
	ev.Status = uint16(status)
	ev.DurationUS = clampUS(dur) // %D is in microseconds
	ev.Scope, ev.Role, ev.Rollout = d.origin(nil, namespace, deployment, release, pod)
	return nil
}

// accessLogTime is the request time. httpd's "timestamp" has second
// precision and no zone (the servers run UTC); the Kafka record time is
// more precise, so it is used when it falls within that second.
func (d *Decoder) accessLogTime(kt int64) (int64, error) {
	if ns, _, ok, err := d.timeField(alAtTimestamp); err != nil || ok {
		if err != nil {
			return 0, err
		}
		return ns, d.checkSkew(ns, kt)
	}
	ns, frac, ok, err := d.timeField(alTimestamp)
	switch {
	case err != nil:
		return 0, err
	case !ok && kt == 0:
		return 0, ErrMissingField
	case !ok:
		return kt, nil
	case !frac && kt != 0 && kt >= ns && kt < ns+1e9:
		return kt, nil
	}
	return ns, d.checkSkew(ns, kt)
}

// hostAndStatus reads a request's wiki (from its Host) and HTTP status, the
// two fields every request format must have. The status may be a JSON
// number or a digit string (httpd and webrequest quote it).
func (d *Decoder) hostAndStatus(hostSlot, statusSlot int) (wikimap.ID, float64, error) {
	host, err := d.nonEmpty(hostSlot)
	if err != nil {
		return 0, 0, err
	}
	if len(host) == 0 {
		return 0, 0, ErrMissingField
	}
	wiki := d.wikis.ByHost(host)
	if wiki == 0 {
		if internalHost(host) {
			return 0, 0, ErrNoWiki
		}
		return 0, 0, ErrUnknownWiki
	}
	status, ok, err := d.number(statusSlot)
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, 0, ErrMissingField
	}
	if status < 0 || status > 999 || status != float64(uint16(status)) {
		return 0, 0, ErrWrongType
	}
	return wiki, status, nil
}
