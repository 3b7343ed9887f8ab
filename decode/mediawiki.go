package decode

import (
	"bytes"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// MediaWiki error-log events as Kafka carries them (topics k8s-mw-<dc>,
// udp_localhost-<severity>; docs/domain.md section 3): Monolog's LogstashFormatter
// JSON spliced by rsyslog's syslog_cee template after its own keys and a
// kubernetes{namespace_name, pod_name, labels{deployment, release}} block.
// The ECS variant Logstash writes (labels.wiki, service.version,
// error.type, log.origin.file.name, …) decodes too.
//
// syslog_cee writes "host" (the rsyslog hostname), then MediaWiki's JSON
// brings its own "host": a record holds the key twice, and JSON parsers
// disagree on which one wins. Nothing here reads "host": the pod comes
// from kubernetes.pod_name, the wiki from "wiki" or "server".

const (
	mwAtTimestamp = iota
	mwTimestamp
	mwChannel
	mwLevel
	mwMonologLevel
	mwSeverity
	mwWiki
	mwServer
	mwURLFull
	mwVersion
	mwServergroup
	mwNormalized
	mwMessage
	mwReqID
	mwClass
	mwFile
	mwTrace
	mwNamespace
	mwDeployment
	mwRelease
	mwPod
	mwNumSlots
)

func mediaWikiSlot(p []byte) int {
	switch string(p) {
	case "@timestamp":
		return mwAtTimestamp
	case "timestamp":
		return mwTimestamp
	case "channel", "labels.channel":
		return mwChannel
	case "level", "log.level":
		return mwLevel
	case "monolog_level":
		return mwMonologLevel
	case "severity":
		return mwSeverity
	case "wiki", "labels.wiki":
		return mwWiki
	case "server":
		return mwServer
	case "url.full":
		return mwURLFull
	case "mwversion", "service.version":
		return mwVersion
	case "servergroup", "labels.servergroup":
		return mwServergroup
	case "normalized_message", "labels.normalized_message":
		return mwNormalized
	case "message":
		return mwMessage
	case "reqId", "trace.id":
		return mwReqID
	case "exception.class", "error.type":
		return mwClass
	case "exception.file", "log.origin.file.name":
		return mwFile
	case "exception.trace", "error.stack_trace":
		return mwTrace
	case "kubernetes.namespace_name", "orchestrator.namespace":
		return mwNamespace
	case "kubernetes.labels.deployment", "labels.deployment":
		return mwDeployment
	case "kubernetes.labels.release", "labels.release":
		return mwRelease
	case "kubernetes.pod_name", "orchestrator.resource.name":
		return mwPod
	case "exception", "labels", "service", "trace", "error", "log", "log.origin", "log.origin.file",
		"url", "kubernetes", "kubernetes.labels", "orchestrator", "orchestrator.resource":
		return slotObject
	}
	return slotNone
}

// Monolog levels (RFC 5424 severities scaled as Monolog does).
const (
	levelError = 400
)

// decodeMediaWikiLog decodes an error-log record: the error's event in
// ev, and its detail in det. It reads the fields in a fixed order, the
// first that fails deciding the rejection reason (mediaWikiChannel,
// eventTime, wikiOf, mediaWikiDetail), and interns and classifies only once
// every read has succeeded.
func (d *Decoder) decodeMediaWikiLog(ev *event.Event, det *event.Detail, kt int64) error {
	channel, err := d.mediaWikiChannel()
	if err != nil {
		return err
	}
	ns, err := d.eventTime(kt, mwAtTimestamp, mwTimestamp)
	if err != nil {
		return err
	}
	// "wiki", else the request Host ("server", or the host of ECS url.full).
	wiki, err := d.wikiOf(mwWiki, mwServer, mwURLFull)
	if err == ErrMissingField {
		// No wiki, server or URL: php-wmerrors' fatals of CLI and RPC
		// runs. Well-formed, just about no wiki.
		err = ErrNoWiki
	}
	if err != nil {
		return err
	}
	if err := d.mediaWikiDetail(det, channel); err != nil {
		return err
	}
	namespace, err := d.nonEmpty(mwNamespace)
	if err != nil {
		return err
	}
	deployment, err := d.nonEmpty(mwDeployment)
	if err != nil {
		return err
	}
	release, err := d.nonEmpty(mwRelease)
	if err != nil {
		return err
	}
	pod, err := d.nonEmpty(mwPod)
	if err != nil {
		return err
	}

	ev.Time = ns
	ev.Kind = event.KindError
	ev.Wiki = wiki
	ev.Scope, ev.Role, ev.Rollout = d.origin(det.Servergroup, namespace, deployment, release, pod)
	if len(det.Version) > 0 {
		ev.Version = d.versions.ID(det.Version)
	}
	ev.Shared, det.Frame = d.opts.Classifier.Classify(channel, det.File, det.Trace)
	ev.Fingerprint = Fingerprint(det.Message, det.Class, det.File)
	return nil
}

// mediaWikiChannel returns the record's channel if the record is counted,
// else ErrSkip: what scap and the alerts count (exceptions, PHP errors and
// fatals) and the channels that report trouble with shared data, at ERROR
// or above.
func (d *Decoder) mediaWikiChannel() ([]byte, error) {
	channel, err := d.nonEmpty(mwChannel)
	if err != nil {
		return nil, err
	}
	if len(channel) == 0 {
		// Not a MediaWiki log line (php-fpm slowlog, rsyslog's own lines).
		return nil, ErrSkip
	}
	errChannel := string(channel) == "exception" || string(channel) == "error" || string(channel) == "fatal"
	if !errChannel && d.opts.Classifier.channelClass(channel) == event.SharedNone {
		return nil, ErrSkip
	}
	atError, err := d.mediaWikiAtError()
	if err != nil {
		return nil, err
	}
	if !atError {
		return nil, ErrSkip
	}
	return channel, nil
}

// mediaWikiDetail fills det from the record's message, exception, version,
// servergroup and request ID fields. A record without a message is
// ErrMissingField.
func (d *Decoder) mediaWikiDetail(det *event.Detail, channel []byte) error {
	msg, err := d.nonEmpty(mwMessage)
	if err != nil {
		return err
	}
	norm, err := d.nonEmpty(mwNormalized)
	if err != nil {
		return err
	}
	if len(msg) == 0 && len(norm) == 0 {
		return ErrMissingField
	}
	class, err := d.nonEmpty(mwClass)
	if err != nil {
		return err
	}
	file, err := d.nonEmpty(mwFile)
	if err != nil {
		return err
	}
	trace, err := d.nonEmpty(mwTrace)
	if err != nil {
		return err
	}
	version, err := d.nonEmpty(mwVersion)
	if err != nil {
		return err
	}
	servergroup, err := d.nonEmpty(mwServergroup)
	if err != nil {
		return err
	}
	reqID, err := d.nonEmpty(mwReqID)
	if err != nil {
		return err
	}

	if len(version) == 0 {
		// php-wmerrors fatals log no mwversion; their paths carry it.
		if version = versionFromPath(file); len(version) == 0 {
			version = versionFromPath(msg)
		}
	}
	if len(norm) > 0 {
		det.Message, _ = bytes.CutPrefix(norm, []byte(exceptionPrefix))
	} else {
		det.Message = stripRequestPrefix(msg)
	}
	det.Exemplar = msg
	if len(det.Exemplar) == 0 {
		det.Exemplar = norm
	}
	det.Class = class
	det.Channel = channel
	det.File = stripLine(file)
	det.Trace = trace
	det.Version = version
	det.Servergroup = servergroup
	det.ReqID = reqID
	return nil
}

// mediaWikiAtError says whether the record is at ERROR or above, from
// monolog_level, else the level name, else the syslog severity rsyslog
// adds.
func (d *Decoder) mediaWikiAtError() (bool, error) {
	lvl, ok, err := d.number(mwMonologLevel)
	if err != nil {
		return false, err
	}
	if ok {
		return lvl >= levelError, nil
	}
	name, err := d.nonEmpty(mwLevel)
	if err != nil {
		return false, err
	}
	if len(name) == 0 {
		if name, err = d.nonEmpty(mwSeverity); err != nil {
			return false, err
		}
	}
	if len(name) == 0 {
		return false, ErrMissingField
	}
	atError, known := levelAtError(name)
	if !known {
		return false, ErrWrongType
	}
	return atError, nil
}

// levelAtError maps Monolog level names and syslog severity names (any
// case) to whether they are ERROR or worse.
func levelAtError(name []byte) (atError, known bool) {
	var buf [16]byte
	if len(name) > len(buf) {
		return false, false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:len(name)]) {
	case "error", "err", "critical", "crit", "alert", "emergency", "emerg", "fatal", "panic":
		return true, true
	case "debug", "info", "informational", "notice", "warning", "warn":
		return false, true
	}
	return false, false
}

// wikiOf resolves a record's wiki: the dbname in nameSlot, else the host in
// hostSlot, else the host of the URL in urlSlot (php-wmerrors fatals and
// some client errors carry no wiki field). An unknown name or host is
// ErrUnknownWiki; neither present is ErrMissingField.
func (d *Decoder) wikiOf(nameSlot, hostSlot, urlSlot int) (wikimap.ID, error) {
	name, err := d.nonEmpty(nameSlot)
	if err != nil {
		return 0, err
	}
	if len(name) > 0 {
		if id := d.wikis.ByName(name); id != 0 {
			return id, nil
		}
		return 0, ErrUnknownWiki
	}
	host, err := d.nonEmpty(hostSlot)
	if err != nil {
		return 0, err
	}
	if len(host) == 0 {
		u, err := d.nonEmpty(urlSlot)
		if err != nil {
			return 0, err
		}
		host = hostOfURL(u)
	}
	if len(host) == 0 {
		return 0, ErrMissingField
	}
	if id := d.wikis.ByHost(host); id != 0 {
		return id, nil
	}
	if internalHost(host) {
		return 0, ErrNoWiki
	}
	return 0, ErrUnknownWiki
}

// stripRequestPrefix removes "[<reqId>] <url>   " (or just "[<reqId>] ",
// as php-wmerrors writes) from a raw exception message, for records
// without normalized_message.
func stripRequestPrefix(msg []byte) []byte {
	if len(msg) == 0 || msg[0] != '[' {
		return msg
	}
	end := bytes.Index(msg, []byte("] "))
	if end < 0 || bytes.IndexByte(msg[1:end], ' ') >= 0 {
		return msg
	}
	rest := msg[end+2:]
	// An URL has no spaces; MediaWiki puts three after it.
	if sp := bytes.IndexByte(rest, ' '); sp > 0 && bytes.HasPrefix(rest[sp:], []byte("   ")) {
		return rest[sp+3:]
	}
	return rest
}
