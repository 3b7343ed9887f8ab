package decode

import "github.com/wikimedia/pretrain-detector/event"

// Webrequest (varnishkafka/HAProxy at the CDN edge: webrequest_text, since
// 2025-04 webrequest_frontend_text; docs/domain.md section 4, the
// development/webrequest/1.0.0 schema): one request as the CDN saw it.
// http_status is a string; time_firstbyte is in seconds. The edge does not
// know which MediaWiki deployment answered, so events are ScopeTrain.

const (
	wrHost = iota
	wrStatus
	wrDt
	wrMetaDt
	wrDomain
	wrTTFB
	wrNumSlots
)

func webrequestSlot(p []byte) int {
	switch string(p) {
	case "uri_host":
		return wrHost
	case "http_status":
		return wrStatus
	case "dt":
		return wrDt
	case "meta.dt":
		return wrMetaDt
	case "meta.domain":
		return wrDomain
	case "time_firstbyte":
		return wrTTFB
	case "meta":
		return slotObject
	}
	return slotNone
}

func (d *Decoder) decodeWebrequest(ev *event.Event, kt int64) error {
	if skip, err := d.isCanary(wrDomain); skip || err != nil {
		return err
	}
	wiki, status, err := d.hostAndStatus(wrHost, wrStatus)
	if err != nil {
		return err
	}
	ns, err := d.requiredTime(kt, wrDt, wrMetaDt)
	if err != nil {
		return err
	}
	ttfb, _, err := d.number(wrTTFB)
	if err != nil {
		return err
	}
	ev.Time = ns
	ev.Kind = event.KindRequest
	ev.Wiki = wiki
	ev.Status = uint16(status)
	ev.DurationUS = clampUS(ttfb * 1e6)
	return nil
}
