// Package decode turns one Kafka record of a MediaWiki error-log or
// request stream into a flat event.Event: a JSON scanner that finds the
// fields each format needs without allocating, one decoder per format, the
// shared-data classifier and error fingerprints. It knows nothing of Kafka:
// every reason a record is refused is an error value here (errors.go), so
// the consumer, replay and the tests count them the same way.
package decode

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// This file holds the Decoder and what every format's decoder shares: its
// construction, Decode, the record's time and skew check, and the origin
// (scope, role, rollout) of the server that wrote the record. It is a
// little over 400 lines and kept whole, like the scanner (json.go): these
// functions run for every record, and moving them to other files changes
// the placement of the hot code, which moved the benchmarks of formats
// whose code had not changed.

// Format is the record format of a topic.
type Format string

const (
	FormatMediaWikiLog Format = "mediawiki-log"   // k8s-mw-eqiad, k8s-mw-codfw, udp_localhost-*
	FormatAccessLog    Format = "httpd-accesslog" // mediawiki.httpd.accesslog
	FormatAPIRequest   Format = "api-request"     // <dc>.mediawiki.api-request
	FormatClientError  Format = "client-error"    // <dc>.mediawiki.client.error
	FormatWebrequest   Format = "webrequest"      // webrequest_text, webrequest_frontend_text
)

// Requests tells whether the format carries requests (the denominators of
// every rate) rather than errors.
func (f Format) Requests() bool {
	switch f {
	case FormatAccessLog, FormatAPIRequest, FormatWebrequest:
		return true
	}
	return false
}

// Formats lists every format, in documentation order.
func Formats() []Format {
	return []Format{FormatMediaWikiLog, FormatAccessLog, FormatAPIRequest, FormatClientError, FormatWebrequest}
}

// ParseFormat parses a format name as written in the configuration.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats() {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown record format %q (want mediawiki-log, httpd-accesslog, api-request, client-error or webrequest)", s)
}

// Options tunes a Decoder. The zero value means the defaults.
type Options struct {
	// MaxRecordBytes rejects larger records as ErrOversize. Default 1 MiB,
	// at most 1 GiB.
	MaxRecordBytes int
	// MaxSkew rejects a record whose own time is further than this from
	// its Kafka timestamp as ErrTimeRange. It compares with the record's
	// Kafka time, not the wall clock, so replay decides as live did. The
	// check is skipped when the Kafka time is zero. Default 1 h; negative
	// disables the check.
	MaxSkew time.Duration
	// PretrainServergroupPrefix marks Pretrain's servergroups. Default
	// "kube-mw-pretrain" (php.servergroup is kube-mw-pretrain[-<release>]).
	PretrainServergroupPrefix string
	// PretrainDeployment is Pretrain's Kubernetes namespace and deployment
	// label. Default "mw-pretrain".
	PretrainDeployment string
	// Classifier classifies errors by shared-data path. Default
	// DefaultClassifier().
	Classifier *Classifier
}

// Defaults of Options' zero fields, and the detector's defaults for the
// settings they come from (kafka.max_record_bytes, kafka.max_skew,
// pretrain.servergroup_prefix, pretrain.deployment): config.Default reads
// them from here, so each value is written once.
const (
	DefaultMaxRecordBytes            = 1 << 20
	DefaultMaxSkew                   = time.Hour
	DefaultPretrainServergroupPrefix = "kube-mw-pretrain"
	DefaultPretrainDeployment        = "mw-pretrain"
)

const maxRecordBytesLimit = 1 << 30 // offsets into a record are int32

func (o *Options) withDefaults() Options {
	out := *o
	if out.MaxRecordBytes <= 0 {
		out.MaxRecordBytes = DefaultMaxRecordBytes
	}
	out.MaxRecordBytes = min(out.MaxRecordBytes, maxRecordBytesLimit)
	if out.MaxSkew == 0 {
		out.MaxSkew = DefaultMaxSkew
	}
	if out.PretrainServergroupPrefix == "" {
		out.PretrainServergroupPrefix = DefaultPretrainServergroupPrefix
	}
	if out.PretrainDeployment == "" {
		out.PretrainDeployment = DefaultPretrainDeployment
	}
	if out.Classifier == nil {
		out.Classifier = DefaultClassifier()
	}
	return out
}

// Decoder decodes one topic format. One per goroutine: it reuses parser
// state; not safe for concurrent use. The Map, Interners and Classifier
// may be shared.
type Decoder struct {
	format   Format
	wikis    *wikimap.Map
	versions *event.Interner
	rollouts *event.Interner
	opts     Options

	pretrainSG  []byte
	pretrainDep []byte

	// Per-record state.
	data    []byte
	fields  [maxFields]span
	nslots  int          // slots the format uses: only these are cleared per record
	clean   bool         // the record is printable ASCII without backslashes (see scanStr)
	path    []byte       // dotted path of the object being scanned
	scratch []byte       // unescaped strings and built keys; reset per record
	det     event.Detail // stands in when Decode gets a nil *Detail

	// Origins already derived, by their fields (see origin).
	originKey []byte
	origins   map[string]originInfo
}

// New returns a Decoder for format f. versions and rollouts intern
// mwversion strings and "<release>-<pod-template-hash>" rollout keys; share
// them between all decoders so ids agree.
func New(f Format, wikis *wikimap.Map, versions, rollouts *event.Interner, opts Options) (*Decoder, error) {
	if _, err := ParseFormat(string(f)); err != nil {
		return nil, err
	}
	if wikis == nil {
		return nil, errors.New("new decoder: nil wiki map")
	}
	if versions == nil || rollouts == nil {
		return nil, errors.New("new decoder: nil interner")
	}
	o := opts.withDefaults()
	nslots := map[Format]int{
		FormatAccessLog: alNumSlots, FormatMediaWikiLog: mwNumSlots, FormatAPIRequest: arNumSlots,
		FormatClientError: ceNumSlots, FormatWebrequest: wrNumSlots,
	}[f]
	return &Decoder{
		nslots: nslots,
		format: f, wikis: wikis, versions: versions, rollouts: rollouts, opts: o,
		pretrainSG:  []byte(o.PretrainServergroupPrefix),
		pretrainDep: []byte(o.PretrainDeployment),
		path:        make([]byte, 0, 128),
		scratch:     make([]byte, 0, 1024),
		originKey:   make([]byte, 0, 128),
		origins:     make(map[string]originInfo, maxOrigins),
	}, nil
}

// Format is the format the decoder reads.
func (d *Decoder) Format() Format { return d.format }

// Decode fills ev (and det for errors) from one record. It returns nil,
// ErrSkip (well-formed but not counted: canary events, DEBUG/INFO log
// lines, non-error channels), or one of the rejection errors, unwrapped so
// that counting allocates nothing. det's slices point into value or into
// the decoder's scratch space: they are valid until the next Decode. det
// may be nil when the caller has no use for it.
func (d *Decoder) Decode(value []byte, kafkaTime time.Time, ev *event.Event, det *event.Detail) error {
	*ev = event.Event{}
	if det == nil {
		det = &d.det
	}
	*det = event.Detail{}
	if len(value) > d.opts.MaxRecordBytes {
		return ErrOversize
	}
	d.scratch = d.scratch[:0]
	err := d.scan(value)
	if err == nil {
		var kt int64
		if !kafkaTime.IsZero() {
			kt = kafkaTime.UnixNano()
		}
		switch d.format {
		case FormatAccessLog:
			err = d.decodeAccessLog(ev, kt)
		case FormatMediaWikiLog:
			err = d.decodeMediaWikiLog(ev, det, kt)
		case FormatAPIRequest:
			err = d.decodeAPIRequest(ev, kt)
		case FormatClientError:
			err = d.decodeClientError(ev, det, kt)
		case FormatWebrequest:
			err = d.decodeWebrequest(ev, kt)
		}
	}
	d.data = nil // do not keep the record alive
	if err != nil {
		*ev = event.Event{}
		*det = event.Detail{}
	}
	d.det = event.Detail{}
	return err
}

// timeField parses the timestamp in slot. ok is false when it is absent;
// an unparseable value is ErrWrongType.
func (d *Decoder) timeField(slot int) (ns int64, frac, ok bool, err error) {
	b, present, err := d.str(slot)
	if err != nil || !present {
		return 0, false, false, err
	}
	ns, frac, ok = parseTimestamp(b)
	if !ok {
		return 0, false, false, ErrWrongType
	}
	return ns, frac, true, nil
}

// eventTime picks the record time from the first present slot, or the
// Kafka time (kt, 0 when unknown) when none is, and checks the skew.
func (d *Decoder) eventTime(kt int64, slots ...int) (int64, error) {
	if ns, ok, err := d.firstTime(kt, slots); ok || err != nil {
		return ns, err
	}
	if kt == 0 {
		return 0, ErrMissingField
	}
	return kt, nil
}

// firstTime is the time of the first present slot, skew-checked against
// kt; ok is false when no slot is present.
func (d *Decoder) firstTime(kt int64, slots []int) (ns int64, ok bool, err error) {
	for _, s := range slots {
		ns, _, ok, err := d.timeField(s)
		if err != nil {
			return 0, false, err
		}
		if ok {
			return ns, true, d.checkSkew(ns, kt)
		}
	}
	return 0, false, nil
}

// checkSkew rejects an event time too far from the Kafka time.
func (d *Decoder) checkSkew(ns, kt int64) error {
	if kt == 0 || d.opts.MaxSkew < 0 {
		return nil
	}
	diff := ns - kt
	if diff < 0 {
		diff = -diff
	}
	if diff < 0 || diff > int64(d.opts.MaxSkew) { // diff < 0: the negation overflowed
		return ErrTimeRange
	}
	return nil
}

// origin returns the scope, role and rollout of the server that produced
// a record. Records from one pod repeat the same values, so answers are
// kept by their inputs: one map lookup is cheaper than deriving the role
// and interning the rollout again, and a partition interleaves the records
// of many pods, so one remembered answer would rarely be the right one.
func (d *Decoder) origin(servergroup, namespace, deployment, release, pod []byte) (event.Scope, event.Role, uint32) {
	k := d.originKey[:0]
	for _, b := range [...][]byte{servergroup, namespace, deployment, release, pod} {
		k = append(k, b...)
		k = append(k, 0)
	}
	d.originKey = k
	if o, ok := d.origins[string(k)]; ok { // no allocation: the compiler views k
		return o.scope, o.role, o.rollout
	}
	o := originInfo{scope: event.ScopeTrain, role: roleOf(servergroup, release, deployment), rollout: d.rolloutOf(pod, release)}
	if d.isPretrain(servergroup, namespace, deployment) {
		o.scope = event.ScopePretrain
	}
	if len(d.origins) >= maxOrigins {
		// Pods come and go with every deploy; forgetting them all at
		// once is simpler than an LRU and costs one re-derivation each.
		clear(d.origins)
	}
	d.origins[string(k)] = o
	return o.scope, o.role, o.rollout
}

// originInfo is what origin derives from a record's origin fields.
type originInfo struct {
	scope   event.Scope
	role    event.Role
	rollout uint32
}

// maxOrigins bounds the origin cache of a decoder. A partition of the
// access log carries records of every pod that writes to it: a few hundred
// at Wikimedia, so the cache holds them all and derivation is rare.
const maxOrigins = 4096

// isPretrain says whether a servergroup, namespace or deployment label
// names Pretrain (docs/domain.md section 7).
func (d *Decoder) isPretrain(servergroup, namespace, deployment []byte) bool {
	return bytes.HasPrefix(servergroup, d.pretrainSG) ||
		bytes.Equal(namespace, d.pretrainDep) || bytes.Equal(deployment, d.pretrainDep)
}

// roleOf derives the server role from servergroup ("kube-mw-api-ext",
// "jobrunner", "kube-mw-pretrain-canary"), Kubernetes release ("main",
// "canary", "jobrunner-canary") and deployment ("mw-api-int"). Jobrunner
// wins over canary and debug: a jobrunner canary still runs jobs, which is
// what matters for the changeprop path.
func roleOf(servergroup, release, deployment []byte) event.Role {
	switch {
	case any3(servergroup, release, deployment, "jobrunner") || any3(servergroup, release, deployment, "videoscaler"):
		return event.RoleJobrunner
	case any3(servergroup, release, deployment, "debug"):
		return event.RoleDebug
	case any3(servergroup, release, deployment, "canary"):
		return event.RoleCanary
	case any3(servergroup, release, deployment, "parsoid"):
		return event.RoleParsoid
	case any3(servergroup, release, deployment, "api"):
		return event.RoleAPI
	case any3(servergroup, release, deployment, "appserver"), any3(servergroup, release, deployment, "web"),
		any3(servergroup, release, deployment, "main"), any3(servergroup, release, deployment, "pretrain"):
		return event.RoleWeb
	}
	return event.RoleUnknown
}

func any3(a, b, c []byte, s string) bool {
	return strings.Contains(bstr(a), s) || strings.Contains(bstr(b), s) || strings.Contains(bstr(c), s)
}

// bstr views b as a string without copying, for the duration of a call
// that does not keep it.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// rolloutOf returns the interned "<release>-<pod-template-hash>" of a pod
// name "<deployment>-<rs-hash>-<5-char suffix>" (mw-pretrain.eqiad.main-
// 6d8f7c9b5-x7k2p), 0 when the name has no such shape. A new hash in a
// scope is a new rollout: Pretrain's mwversion does not change per deploy,
// so this is how its deploys are seen. Without a release label the
// deployment part of the pod name stands in.
func (d *Decoder) rolloutOf(pod, release []byte) uint32 {
	j := bytes.LastIndexByte(pod, '-')
	if j < 0 || !k8sRandom(pod[j+1:], 5, 5) {
		return 0
	}
	i := bytes.LastIndexByte(pod[:j], '-')
	if i <= 0 || !k8sRandom(pod[i+1:j], 4, 10) {
		return 0
	}
	if len(release) == 0 {
		release = pod[:i]
	}
	start := len(d.scratch)
	d.scratch = append(d.scratch, release...)
	d.scratch = append(d.scratch, '-')
	d.scratch = append(d.scratch, pod[i+1:j]...)
	return d.rollouts.ID(d.scratch[start:])
}

// k8sRandom says whether b could be a ReplicaSet hash or a pod-name
// suffix: Kubernetes draws both from the alphabet of rand.SafeEncodeString,
// which has no vowels and no 0, 1 or 3.
func k8sRandom(b []byte, minLen, maxLen int) bool {
	if len(b) < minLen || len(b) > maxLen {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'b' && c <= 'z' && c != 'e' && c != 'i' && c != 'o' && c != 'u' && c != 'a' && c != 'y':
		case c >= '2' && c <= '9' && c != '3':
		default:
			return false
		}
	}
	return true
}

// hostOfURL returns the host of "scheme://host[:port]/…", nil if none.
func hostOfURL(u []byte) []byte {
	i := bytes.Index(u, []byte("://"))
	if i < 0 {
		return nil
	}
	h := u[i+3:]
	if j := bytes.IndexAny(h, "/?#"); j >= 0 {
		h = h[:j]
	}
	if j := bytes.LastIndexByte(h, '@'); j >= 0 {
		h = h[j+1:]
	}
	return h
}

// clampUS converts a duration in µs to the Event's uint32, saturating.
func clampUS(us float64) uint32 {
	switch {
	case us <= 0 || us != us:
		return 0
	case us >= 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(us)
}
