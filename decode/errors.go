package decode

import "errors"

// Rejection reasons. Each is a label value of
// detector_ingest_records_rejected_total; decoders return them unwrapped so
// counting costs no allocation.
var (
	ErrInvalidJSON  = errors.New("invalid_json")
	ErrWrongType    = errors.New("wrong_type")
	ErrMissingField = errors.New("missing_field")
	ErrUnknownWiki  = errors.New("unknown_wiki")
	ErrOversize     = errors.New("oversize")
	ErrNonUTF8      = errors.New("non_utf8")
	ErrTimeRange    = errors.New("time_out_of_range")
)

// RejectReasons lists every rejection reason, so metrics can be initialised.
var RejectReasons = []error{ErrInvalidJSON, ErrWrongType, ErrMissingField, ErrUnknownWiki, ErrOversize, ErrNonUTF8, ErrTimeRange}

// ErrSkip marks a well-formed record the detector does not count (a canary
// event, a DEBUG log line). It is not a rejection: it is counted in
// detector_ingest_records_skipped_total with reason "filtered".
var ErrSkip = errors.New("skip")

// ErrNoWiki marks a well-formed record that names no wiki: an access-log
// line of an internal service host (the jobrunners' /rpc/RunSingleJob.php
// on mw-jobrunner.discovery.wmnet, health checks on *.discovery.wmnet), a
// php-wmerrors fatal logged without wiki or server. It is a skip
// (errors.Is(ErrNoWiki, ErrSkip)), reason "no_wiki". A record that names a
// wiki or a public host the wiki map does not know is still rejected as
// ErrUnknownWiki.
var ErrNoWiki error = skipReason("no_wiki")

// skipReason is a skip with its own label value.
type skipReason string

func (s skipReason) Error() string        { return string(s) }
func (s skipReason) Is(target error) bool { return target == ErrSkip }

// SkipReasons are the label values of detector_ingest_records_skipped_total.
var SkipReasons = []string{"filtered", string(ErrNoWiki.(skipReason))}

// SkipReason is the label value of a skip error.
func SkipReason(err error) string {
	if s, ok := err.(skipReason); ok {
		return string(s)
	}
	return "filtered"
}
