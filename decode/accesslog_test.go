package decode

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/wikimedia/pretrain-detector/event"
)

func TestAccessLogSamples(t *testing.T) {
	recs := readLines(t, "accesslog.jsonl")
	cases := []struct {
		name string
		want want
	}{
		{"flat pretrain testwiki", want{
			time: "2026-08-21T10:15:42Z", kind: event.KindRequest, wiki: "testwiki", scope: event.ScopePretrain, role: event.RoleWeb,
			status: 200, durationUS: 35012, rollout: "main-6d8f7c9b5",
		}},
		{"nested copy of the same record", want{
			time: "2026-08-21T10:15:42Z", kind: event.KindRequest, wiki: "testwiki", scope: event.ScopePretrain, role: event.RoleWeb,
			status: 200, durationUS: 35012, rollout: "main-6d8f7c9b5",
		}},
		{"flat train api enwiki 503", want{
			time: "2026-08-21T10:15:43Z", kind: event.KindRequest, wiki: "enwiki", scope: event.ScopeTrain, role: event.RoleAPI,
			status: 503, durationUS: 60000123, rollout: "main-7b957d95c7",
		}},
		{"nested numbers, mobile host", want{
			time: "2026-08-21T10:15:44Z", kind: event.KindRequest, wiki: "enwiki", scope: event.ScopeTrain, role: event.RoleWeb,
			status: 304, durationUS: 812, rollout: "main-5f6b8d7c9d",
		}},
		{"pretrain canary serving dewiki (a leak)", want{
			time: "2026-08-21T10:15:45Z", kind: event.KindRequest, wiki: "dewiki", scope: event.ScopePretrain, role: event.RoleCanary,
			status: 200, durationUS: 41000, rollout: "canary-8c4d5f6b7",
		}},
		{"train jobrunner running a testwiki job", want{
			time: "2026-08-21T10:15:46Z", kind: event.KindRequest, wiki: "testwiki", scope: event.ScopeTrain, role: event.RoleJobrunner,
			status: 500, durationUS: 1200345, rollout: "main-69c8d7f5b4",
		}},
	}
	require.Len(t, recs, len(cases))
	e := newEnv(t, FormatAccessLog, Options{})
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.check(t, recs[i], time.Time{}, tc.want)
		})
	}
}

// httpd writes flat dotted keys, other producers nest them: the same
// record in either shape decodes to the same event.
func TestAccessLogFlatEqualsNested(t *testing.T) {
	recs := readLines(t, "accesslog.jsonl")
	require.Contains(t, string(recs[0]), `"url.domain":"test.wikipedia.org"`)
	require.Contains(t, string(recs[1]), `"url":{"domain":"test.wikipedia.org"`)
	e := newEnv(t, FormatAccessLog, Options{})
	var flat, nested event.Event
	kafka := mustTime(t, "2026-08-21T10:15:42.318Z")
	require.NoError(t, e.d.Decode(recs[0], kafka, &flat, nil))
	require.NoError(t, e.d.Decode(recs[1], kafka, &nested, nil))
	require.Equal(t, flat, nested)
}

func TestAccessLogTime(t *testing.T) {
	rec := readLines(t, "accesslog.jsonl")[0] // "timestamp":"2026-08-21T10:15:42"
	cases := []struct {
		name  string
		rec   []byte
		kafka string
		want  string
		err   error
	}{
		{"Kafka time within the logged second is more precise", rec, "2026-08-21T10:15:42.318Z", "2026-08-21T10:15:42.318Z", nil},
		{"Kafka time at the start of the second", rec, "2026-08-21T10:15:42Z", "2026-08-21T10:15:42Z", nil},
		{"Kafka time in the next second: the logged second", rec, "2026-08-21T10:15:43.002Z", "2026-08-21T10:15:42Z", nil},
		{"Kafka time before the logged second", rec, "2026-08-21T10:15:41.9Z", "2026-08-21T10:15:42Z", nil},
		{"no Kafka time", rec, "", "2026-08-21T10:15:42Z", nil},
		{"skew beyond an hour", rec, "2026-08-21T11:15:43Z", "", ErrTimeRange},
		{"a fractional timestamp is used as is", bytes.Replace(rec, []byte(`"timestamp":"2026-08-21T10:15:42"`), []byte(`"timestamp":"2026-08-21T10:15:42.5Z"`), 1),
			"2026-08-21T10:15:42.7Z", "2026-08-21T10:15:42.5Z", nil},
		{"@timestamp wins", bytes.Replace(rec, []byte(`"timestamp":"2026-08-21T10:15:42"`), []byte(`"@timestamp":"2026-08-21T10:15:42.123456Z"`), 1),
			"2026-08-21T10:15:42.7Z", "2026-08-21T10:15:42.123456Z", nil},
		{"no timestamp: Kafka time", bytes.Replace(rec, []byte(`"timestamp":"2026-08-21T10:15:42", `), nil, 1),
			"2026-08-21T10:15:50Z", "2026-08-21T10:15:50Z", nil},
		{"no timestamp, no Kafka time", bytes.Replace(rec, []byte(`"timestamp":"2026-08-21T10:15:42", `), nil, 1),
			"", "", ErrMissingField},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, FormatAccessLog, Options{})
			var kafka time.Time
			if tc.kafka != "" {
				kafka = mustTime(t, tc.kafka)
			}
			var ev event.Event
			err := e.d.Decode(tc.rec, kafka, &ev, nil)
			if tc.err != nil {
				require.Equal(t, tc.err, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, mustTime(t, tc.want).UnixNano(), ev.Time, "got %s", time.Unix(0, ev.Time).UTC().Format(time.RFC3339Nano))
		})
	}
}

// alRecord is a minimal access-log record around the given members.
func alRecord(members ...string) []byte {
	return []byte("{" + strings.Join(members, ", ") + "}")
}

func TestAccessLogFields(t *testing.T) {
	ts := `"timestamp":"2026-08-21T10:15:42"`
	dom := `"url.domain":"test.wikipedia.org"`
	st := `"http.response.status_code":"200"`
	cases := []struct {
		name   string
		rec    []byte
		err    error
		status uint16
		dur    uint32
	}{
		{"minimal", alRecord(ts, dom, st), nil, 200, 0},
		{"status as a number", alRecord(ts, dom, `"http.response.status_code":404`), nil, 404, 0},
		{"duration as a number", alRecord(ts, dom, st, `"event.duration":1500`), nil, 200, 1500},
		{"duration beyond uint32 saturates", alRecord(ts, dom, st, `"event.duration":"99999999999"`), nil, 200, 1<<32 - 1},
		{"negative duration is 0", alRecord(ts, dom, st, `"event.duration":-5`), nil, 200, 0},
		{"host with port and capitals", alRecord(ts, `"url.domain":"Test.Wikipedia.org:443"`, st), nil, 200, 0},
		{"status not numeric", alRecord(ts, dom, `"http.response.status_code":"OK"`), ErrWrongType, 0, 0},
		{"status a boolean", alRecord(ts, dom, `"http.response.status_code":true`), ErrWrongType, 0, 0},
		{"status an object", alRecord(ts, dom, `"http":{"response":{"status_code":{"value":200}}}`), ErrWrongType, 0, 0},
		{"status fractional", alRecord(ts, dom, `"http.response.status_code":200.5`), ErrWrongType, 0, 0},
		{"status out of range", alRecord(ts, dom, `"http.response.status_code":1000`), ErrWrongType, 0, 0},
		{"status empty string", alRecord(ts, dom, `"http.response.status_code":""`), ErrWrongType, 0, 0},
		{"status missing", alRecord(ts, dom), ErrMissingField, 0, 0},
		{"status null", alRecord(ts, dom, `"http.response.status_code":null`), ErrMissingField, 0, 0},
		{"duration not numeric", alRecord(ts, dom, st, `"event.duration":"-"`), ErrWrongType, 0, 0},
		{"domain a number", alRecord(ts, `"url.domain":42`, st), ErrWrongType, 0, 0},
		{"domain missing", alRecord(ts, st), ErrMissingField, 0, 0},
		{"domain empty", alRecord(ts, `"url.domain":""`, st), ErrMissingField, 0, 0},
		{"domain of no wiki", alRecord(ts, `"url.domain":"example.org"`, st), ErrUnknownWiki, 0, 0},
		{"jobrunner service host names no wiki", alRecord(ts, `"url.domain":"mw-jobrunner.discovery.wmnet"`, `"url.path":"/rpc/RunSingleJob.php"`, st), ErrNoWiki, 0, 0},
		{"health check on a discovery host", alRecord(ts, `"url.domain":"mw-api-int.discovery.wmnet:4446"`, `"url.path":"/healthz"`, st), ErrNoWiki, 0, 0},
		{"health check on an address", alRecord(ts, `"url.domain":"10.64.0.12"`, st), ErrNoWiki, 0, 0},
		{"localhost", alRecord(ts, `"url.domain":"localhost"`, st), ErrNoWiki, 0, 0},
		{"timestamp a number", alRecord(`"timestamp":1755771342`, dom, st), ErrWrongType, 0, 0},
		{"timestamp unparseable", alRecord(`"timestamp":"21/Aug/2026:10:15:42 +0000"`, dom, st), ErrWrongType, 0, 0},
		{"deployment a number", alRecord(ts, dom, st, `"labels":{"deployment":1}`), ErrWrongType, 0, 0},
		{"labels a string is skipped", alRecord(ts, dom, st, `"labels":"x"`), nil, 200, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, FormatAccessLog, Options{})
			var ev event.Event
			err := e.d.Decode(tc.rec, time.Time{}, &ev, nil)
			if tc.err != nil {
				require.Equal(t, tc.err, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "testwiki", e.wikis.Wiki(ev.Wiki).DBName)
			require.Equal(t, tc.status, ev.Status)
			require.Equal(t, tc.dur, ev.DurationUS)
		})
	}
}
