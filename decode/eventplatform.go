package decode

import (
	"bytes"

	"github.com/wikimedia/pretrain-detector/event"
)

// Event Platform streams (docs/domain.md section 4): topics <dc>.<stream>,
// common meta{dt, domain, …}. Every stream with canary events carries
// synthetic ones with meta.domain "canary": they are skipped.
//
// Neither stream says which deployment served the request (no servergroup,
// no namespace), so their events are ScopeTrain: Pretrain is identified by
// namespace or servergroup, never by wiki or version.

// canary is the meta.domain of Event Platform canary events.
const canary = "canary"

const (
	arDatabase = iota
	arMetaDt
	arDt
	arDomain
	arErrorCodes
	arBackendMS
	arNumSlots
)

func apiRequestSlot(p []byte) int {
	switch string(p) {
	case "database":
		return arDatabase
	case "meta.dt":
		return arMetaDt
	case "dt":
		return arDt
	case "meta.domain":
		return arDomain
	case "api_error_codes":
		return arErrorCodes
	case "backend_time_ms":
		return arBackendMS
	case "meta":
		return slotObject
	}
	return slotNone
}

// decodeAPIRequest reads mediawiki/api/request/1.0.0: one Action API
// request. It counts as a request; one whose api_error_codes hold an
// internal_api_error_* code (an uncaught exception inside the API) gets
// status 500, any other request 200: user errors such as
// apierror-missingparam are the API working.
func (d *Decoder) decodeAPIRequest(ev *event.Event, kt int64) error {
	if skip, err := d.isCanary(arDomain); skip || err != nil {
		return err
	}
	db, err := d.nonEmpty(arDatabase)
	if err != nil {
		return err
	}
	if len(db) == 0 {
		return ErrMissingField
	}
	wiki := d.wikis.ByName(db)
	if wiki == 0 {
		return ErrUnknownWiki
	}
	ns, err := d.requiredTime(kt, arMetaDt, arDt)
	if err != nil {
		return err
	}
	internal, err := d.hasInternalError(arErrorCodes)
	if err != nil {
		return err
	}
	ms, _, err := d.number(arBackendMS)
	if err != nil {
		return err
	}
	ev.Time = ns
	ev.Kind = event.KindRequest
	ev.Wiki = wiki
	ev.Status = 200
	if internal {
		ev.Status = 500
	}
	ev.DurationUS = clampUS(ms * 1000)
	return nil
}

// isCanary returns ErrSkip for a canary event.
func (d *Decoder) isCanary(slot int) (bool, error) {
	dom, _, err := d.str(slot)
	if err != nil {
		return true, err
	}
	if string(dom) == canary {
		return true, ErrSkip
	}
	return false, nil
}

// requiredTime is the event time from the first present slot; the schemas
// require meta.dt, so a record without one is rejected.
func (d *Decoder) requiredTime(kt int64, slots ...int) (int64, error) {
	ns, ok, err := d.firstTime(kt, slots)
	if !ok && err == nil {
		return 0, ErrMissingField
	}
	return ns, err
}

// hasInternalError walks the api_error_codes array.
func (d *Decoder) hasInternalError(slot int) (bool, error) {
	f := &d.fields[slot]
	switch f.kind {
	case kindAbsent, kindNull:
		return false, nil
	case kindArray:
	default:
		return false, ErrWrongType
	}
	data := d.data[:f.end]
	found := false
	// The array was validated by the scan: only its shape is walked here.
	for i := skipWS(data, int(f.start)+1); i < len(data) && data[i] != ']'; {
		if data[i] != '"' {
			return false, ErrWrongType
		}
		e, esc, err := scanString(data, i+1)
		if err != nil {
			return false, err
		}
		code := data[i+1 : e]
		if esc {
			start := len(d.scratch)
			d.scratch = appendUnescaped(d.scratch, code)
			code = d.scratch[start:]
		}
		if bytes.HasPrefix(code, []byte("internal_api_error_")) {
			found = true
		}
		i = skipWS(data, e+1)
		if i < len(data) && data[i] == ',' {
			i = skipWS(data, i+1)
		}
	}
	return found, nil
}

const (
	ceWiki = iota
	ceVersion
	ceDomain
	ceMetaDt
	ceDt
	ceMessage
	ceClass
	ceFileURL
	ceStack
	ceURL
	ceNumSlots
)

func clientErrorSlot(p []byte) int {
	switch string(p) {
	case "error_context.wiki":
		return ceWiki
	case "error_context.version":
		return ceVersion
	case "meta.domain":
		return ceDomain
	case "meta.dt":
		return ceMetaDt
	case "dt":
		return ceDt
	case "message":
		return ceMessage
	case "error_class":
		return ceClass
	case "file_url":
		return ceFileURL
	case "stack_trace":
		return ceStack
	case "url":
		return ceURL
	case "meta", "error_context":
		return slotObject
	}
	return slotNone
}

// clientErrorChannel stands in for a log channel in the Detail of client
// errors, so findings can say where the error came from.
const clientErrorChannel = "client-error"

// decodeClientError reads mediawiki/client/error/2.0.0: a JavaScript error
// reported by a browser. It counts as an error of its wiki.
func (d *Decoder) decodeClientError(ev *event.Event, det *event.Detail, kt int64) error {
	if skip, err := d.isCanary(ceDomain); skip || err != nil {
		return err
	}
	// error_context.wiki, else meta.domain, else the page URL (the
	// schema's own example has only "url").
	wiki, err := d.wikiOf(ceWiki, ceDomain, ceURL)
	if err != nil {
		return err
	}
	ns, err := d.requiredTime(kt, ceMetaDt, ceDt)
	if err != nil {
		return err
	}
	msg, ok, err := d.str(ceMessage)
	if err != nil {
		return err
	}
	if !ok {
		return ErrMissingField
	}
	class, err := d.nonEmpty(ceClass)
	if err != nil {
		return err
	}
	file, err := d.nonEmpty(ceFileURL)
	if err != nil {
		return err
	}
	stack, err := d.nonEmpty(ceStack)
	if err != nil {
		return err
	}
	version, err := d.nonEmpty(ceVersion)
	if err != nil {
		return err
	}
	start := len(d.scratch)
	d.scratch = append(d.scratch, clientErrorChannel...)
	det.Channel = d.scratch[start:len(d.scratch):len(d.scratch)]
	det.Message = msg
	det.Exemplar = msg
	det.Class = class
	det.File = stripLine(file)
	det.Trace = stack
	det.Version = version

	ev.Time = ns
	ev.Kind = event.KindError
	ev.Wiki = wiki
	// ev.Version stays 0: browsers report error_context.version, and
	// anyone can post client errors, so interning it would let them grow
	// the version table without bound. Detail.Version keeps the text.
	ev.Fingerprint = Fingerprint(det.Message, det.Class, det.File)
	return nil
}
