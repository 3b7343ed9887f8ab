package decode

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/wikimedia/pretrain-detector/event"
)

func TestEventSchemaExamples(t *testing.T) {
	cases := []struct {
		file   string
		format Format
		want   want
	}{
		{"mediawiki-api-request-1.0.0.examples.jsonl", FormatAPIRequest, want{err: ErrUnknownWiki}}, // examplewiki
		{"mediawiki-client-error-2.0.0.examples.jsonl", FormatClientError, want{
			// No error_context.wiki nor meta.domain: the wiki of the page URL.
			time: "2019-01-01T00:00:00Z", kind: event.KindError, wiki: "enwiki", scope: event.ScopeTrain,
			message: "example error message", exemplar: "example error message",
			class: "Error", channel: "client-error", file: "index.js",
		}},
		{"development-webrequest-1.0.0.examples.jsonl", FormatWebrequest, want{
			time: "2021-01-01T00:00:00Z", kind: event.KindRequest, wiki: "enwiki", scope: event.ScopeTrain,
			status: 200, durationUS: 300,
		}},
		// Other streams' examples, through the decoder nearest to them.
		{"mediawiki-job-1.0.0.examples.jsonl", FormatAPIRequest, want{err: ErrUnknownWiki}},
		{"mediawiki-cirrussearch-request-0.0.1.examples.jsonl", FormatAPIRequest, want{err: ErrUnknownWiki}},
		{"fragment-mediawiki-common-3.0.0.examples.jsonl", FormatAPIRequest, want{err: ErrUnknownWiki}}, // database "dolor"
		{"fragment-common-2.0.0.examples.jsonl", FormatAPIRequest, want{err: ErrMissingField}},          // no database
		{"fragment-common-2.0.0.examples.jsonl", FormatClientError, want{err: ErrUnknownWiki}},          // meta.domain "dolor"
		{"error-2.1.0.examples.jsonl", FormatClientError, want{err: ErrMissingField}},                   // no wiki, domain or url
		{"fragment-http-1.2.0.examples.jsonl", FormatWebrequest, want{err: ErrMissingField}},
		{"w3c-reportingapi-network_error-1.0.0.examples.jsonl", FormatClientError, want{err: ErrUnknownWiki}}, // url www.example.com
	}
	for _, tc := range cases {
		t.Run(tc.file+"/"+string(tc.format), func(t *testing.T) {
			e := newEnv(t, tc.format, Options{})
			recs := readLines(t, "event-schemas/"+tc.file)
			require.NotEmpty(t, recs)
			for _, rec := range recs {
				e.check(t, rec, time.Time{}, tc.want)
			}
		})
	}
}

func TestAPIRequest(t *testing.T) {
	const head = `{"$schema": "/mediawiki/api/request/1.0.0", "meta": {"stream": "mediawiki.api-request", "dt": "2026-08-21T10:00:00.5Z", "domain": "test.wikipedia.org", "request_id": "f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f", "id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}, "http": {"method": "POST", "client_ip": "198.51.100.23", "request_headers": {"user-agent": "pywikibot/9.0"}}, "params": {"action": "edit", "title": "Sandbox"}, "database": "testwiki"`
	ok := want{time: "2026-08-21T10:00:00.5Z", kind: event.KindRequest, wiki: "testwiki", scope: event.ScopeTrain, status: 200, durationUS: 123000}
	internal := ok
	internal.status = 500
	cases := []struct {
		name string
		rec  string
		want want
	}{
		{"success", head + `, "backend_time_ms": 123}`, ok},
		{"empty error codes", head + `, "backend_time_ms": 123, "api_error_codes": []}`, ok},
		{"user errors are not failures", head + `, "backend_time_ms": 123, "api_error_codes": ["apierror-missingparam", "apierror-badtoken"]}`, ok},
		{"an internal error is a 500", head + `, "backend_time_ms": 123, "api_error_codes": ["apierror-missingparam", "internal_api_error_DBQueryError"]}`, internal},
		{"escaped code", head + `, "backend_time_ms": 123, "api_error_codes": ["internal\u005fapi_error_TypeError"]}`, internal},
		{"canary", `{"meta": {"domain": "canary", "dt": "2026-08-21T10:00:00Z", "stream": "mediawiki.api-request"}, "database": "testwiki"}`, want{err: ErrSkip}},
		{"error codes not an array", head + `, "api_error_codes": "internal_api_error_X"}`, want{err: ErrWrongType}},
		{"error code not a string", head + `, "api_error_codes": [1]}`, want{err: ErrWrongType}},
		{"backend_time_ms a string", head + `, "backend_time_ms": "slow"}`, want{err: ErrWrongType}},
		{"database a number", `{"meta": {"dt": "2026-08-21T10:00:00Z"}, "database": 3}`, want{err: ErrWrongType}},
		{"no meta.dt", `{"meta": {"stream": "s"}, "database": "testwiki"}`, want{err: ErrMissingField}},
		{"no database", `{"meta": {"dt": "2026-08-21T10:00:00Z"}}`, want{err: ErrMissingField}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, FormatAPIRequest, Options{})
			e.check(t, []byte(tc.rec), time.Time{}, tc.want)
		})
	}
}

func TestClientError(t *testing.T) {
	const stack = "at mw.loader.impl/<@https://test.wikipedia.org/w/load.php?lang=en&modules=ext.gadget.Foo&skin=vector-2022&version=abc12:3:12"
	full := `{"$schema": "/mediawiki/client/error/2.0.0", "meta": {"stream": "mediawiki.client.error", "dt": "2026-08-21T10:00:01Z", "domain": "test.wikipedia.org"}, "message": "Uncaught TypeError: Cannot read properties of undefined (reading 'get')", "error_class": "TypeError", "file_url": "https://test.wikipedia.org/w/load.php?modules=ext.gadget.Foo:3", "url": "https://test.wikipedia.org/wiki/Main_Page", "stack_trace": "` + stack + `", "error_context": {"wiki": "testwiki", "version": "1.47.0-wmf.16", "skin": "vector-2022", "action": "view"}}`
	cases := []struct {
		name string
		rec  string
		want want
	}{
		{"full", full, want{
			time: "2026-08-21T10:00:01Z", kind: event.KindError, wiki: "testwiki", scope: event.ScopeTrain,
			message:  "Uncaught TypeError: Cannot read properties of undefined (reading 'get')",
			exemplar: "Uncaught TypeError: Cannot read properties of undefined (reading 'get')",
			class:    "TypeError", channel: "client-error",
			file:  "https://test.wikipedia.org/w/load.php?modules=ext.gadget.Foo",
			trace: stack, dversion: "1.47.0-wmf.16",
		}},
		{"wiki from meta.domain", `{"meta": {"dt": "2026-08-21T10:00:01Z", "domain": "de.m.wikipedia.org"}, "message": "m"}`, want{
			time: "2026-08-21T10:00:01Z", kind: event.KindError, wiki: "dewiki", message: "m", exemplar: "m", channel: "client-error",
		}},
		{"canary", `{"meta": {"dt": "2026-08-21T10:00:01Z", "domain": "canary"}, "message": "m", "error_context": {"wiki": "testwiki"}}`, want{err: ErrSkip}},
		{"unknown wiki", `{"meta": {"dt": "2026-08-21T10:00:01Z"}, "message": "m", "error_context": {"wiki": "nosuchwiki"}}`, want{err: ErrUnknownWiki}},
		{"no message", `{"meta": {"dt": "2026-08-21T10:00:01Z"}, "error_context": {"wiki": "testwiki"}}`, want{err: ErrMissingField}},
		{"message a number", `{"meta": {"dt": "2026-08-21T10:00:01Z"}, "message": 1, "error_context": {"wiki": "testwiki"}}`, want{err: ErrWrongType}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, FormatClientError, Options{})
			e.check(t, []byte(tc.rec), time.Time{}, tc.want)
		})
	}
	t.Run("logstash test input", func(t *testing.T) {
		recs := yamlInputs(t, "logstash-test-clienterror.yaml")
		require.Len(t, recs, 1)
		e := newEnv(t, FormatClientError, Options{})
		e.check(t, recs[0], time.Time{}, want{err: ErrMissingField}) // {"dummy": "key"}
	})
}

func TestWebrequest(t *testing.T) {
	recs := yamlInputs(t, "logstash-test-webrequest.yaml")
	require.Len(t, recs, 2)
	cases := []struct {
		name string
		rec  []byte
		want want
	}{
		{"logstash input 1: demo.wikimedia.org is no wiki", recs[0], want{err: ErrUnknownWiki}},
		{"logstash input 2", recs[1], want{
			time: "2023-04-19T22:19:22Z", kind: event.KindRequest, wiki: "eswiki", scope: event.ScopeTrain, status: 200, durationUS: 308,
		}},
		{"503 from the CDN", []byte(`{"dt": "2026-08-21T10:00:00Z", "uri_host": "test.wikipedia.org", "http_status": "503", "time_firstbyte": 59.975095}`), want{
			time: "2026-08-21T10:00:00Z", kind: event.KindRequest, wiki: "testwiki", status: 503, durationUS: 59975095,
		}},
		{"status as a number", []byte(`{"dt": "2026-08-21T10:00:00Z", "uri_host": "test.wikipedia.org", "http_status": 200}`), want{
			time: "2026-08-21T10:00:00Z", kind: event.KindRequest, wiki: "testwiki", status: 200,
		}},
		{"status not numeric", []byte(`{"dt": "2026-08-21T10:00:00Z", "uri_host": "test.wikipedia.org", "http_status": "-"}`), want{err: ErrWrongType}},
		{"no status", []byte(`{"dt": "2026-08-21T10:00:00Z", "uri_host": "test.wikipedia.org"}`), want{err: ErrMissingField}},
		{"no dt", []byte(`{"uri_host": "test.wikipedia.org", "http_status": "200"}`), want{err: ErrMissingField}},
		{"canary", []byte(`{"meta": {"domain": "canary"}, "dt": "2026-08-21T10:00:00Z", "uri_host": "test.wikipedia.org", "http_status": "200"}`), want{err: ErrSkip}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, FormatWebrequest, Options{})
			e.check(t, tc.rec, time.Time{}, tc.want)
		})
	}
}
