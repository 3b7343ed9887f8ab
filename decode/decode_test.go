package decode

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

func TestParseFormat(t *testing.T) {
	for _, f := range Formats() {
		t.Run(string(f), func(t *testing.T) {
			got, err := ParseFormat(string(f))
			require.NoError(t, err)
			require.Equal(t, f, got)
		})
	}
	_, err := ParseFormat("syslog")
	require.ErrorContains(t, err, `"syslog"`)
	_, err = ParseFormat("")
	require.Error(t, err)
}

func TestNewDecoder(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	in := event.NewInterner()
	_, err = New("syslog", wikis, in, in, Options{})
	require.Error(t, err)
	_, err = New(FormatAccessLog, nil, in, in, Options{})
	require.ErrorContains(t, err, "wiki map")
	_, err = New(FormatAccessLog, wikis, nil, in, Options{})
	require.ErrorContains(t, err, "interner")
	d, err := New(FormatAccessLog, wikis, in, in, Options{})
	require.NoError(t, err)
	require.Equal(t, FormatAccessLog, d.Format())
	require.Equal(t, 1<<20, d.opts.MaxRecordBytes)
	require.Equal(t, time.Hour, d.opts.MaxSkew)
	require.Equal(t, "kube-mw-pretrain", d.opts.PretrainServergroupPrefix)
	require.Equal(t, "mw-pretrain", d.opts.PretrainDeployment)
	require.NotNil(t, d.opts.Classifier)
}

// sampleOf returns a valid record of each format.
func sampleOf(t testing.TB, f Format) []byte {
	t.Helper()
	switch f {
	case FormatAccessLog:
		return readLines(t, "accesslog.jsonl")[0]
	case FormatMediaWikiLog:
		return readLines(t, "mediawiki-k8s.jsonl")[0]
	case FormatAPIRequest:
		return []byte(`{"$schema": "/mediawiki/api/request/1.0.0", "meta": {"stream": "mediawiki.api-request", "dt": "2026-08-21T10:20:01.5Z", "domain": "test.wikipedia.org"}, "database": "testwiki", "backend_time_ms": 12}`)
	case FormatClientError:
		return []byte(`{"meta": {"dt": "2026-08-21T10:20:01Z", "domain": "test.wikipedia.org"}, "message": "Uncaught TypeError: x is undefined", "error_class": "TypeError", "file_url": "https://test.wikipedia.org/w/load.php:1", "error_context": {"wiki": "testwiki"}}`)
	case FormatWebrequest:
		return readLines(t, "event-schemas/development-webrequest-1.0.0.examples.jsonl")[0]
	}
	t.Fatalf("no sample for %s", f)
	return nil
}

// Malformed records are rejected with the same reason by every format.
func TestRejections(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)
	cases := []struct {
		name string
		rec  string
		err  error
	}{
		{"empty", "", ErrInvalidJSON},
		{"whitespace", " \n", ErrInvalidJSON},
		{"truncated", `{"url.domain":"test.wiki`, ErrInvalidJSON},
		{"missing value", `{"a":}`, ErrInvalidJSON},
		{"trailing comma", `{"a":1,}`, ErrInvalidJSON},
		{"missing colon", `{"a" 1}`, ErrInvalidJSON},
		{"single quotes", `{'a':1}`, ErrInvalidJSON},
		{"trailing garbage", `{"a":1} x`, ErrInvalidJSON},
		{"two objects", `{"a":1}{"a":1}`, ErrInvalidJSON},
		{"leading zero", `{"a":01}`, ErrInvalidJSON},
		{"bare minus", `{"a":-}`, ErrInvalidJSON},
		{"dot without digits", `{"a":1.}`, ErrInvalidJSON},
		{"exponent without digits", `{"a":1e}`, ErrInvalidJSON},
		{"bad literal", `{"a":tru}`, ErrInvalidJSON},
		{"NaN", `{"a":NaN}`, ErrInvalidJSON},
		{"raw control character", "{\"a\":\"x\x01y\"}", ErrInvalidJSON},
		{"raw newline in a string", "{\"a\":\"x\ny\"}", ErrInvalidJSON},
		{"bad escape", `{"a":"\q"}`, ErrInvalidJSON},
		{"short unicode escape", `{"a":"\u12"}`, ErrInvalidJSON},
		{"unclosed array", `{"a":[1,2}`, ErrInvalidJSON},
		{"non-string key", `{1:2}`, ErrInvalidJSON},
		{"nesting beyond the limit", deep, ErrInvalidJSON},
		{"byte ≥ 0x80 outside a string", "{\"a\":1\xff}", ErrInvalidJSON},
		{"invalid UTF-8 in a value", "{\"message\":\"caf\xe9\"}", ErrNonUTF8},
		{"invalid UTF-8 in a key", "{\"caf\xe9\":1}", ErrNonUTF8},
		{"truncated UTF-8 sequence", "{\"a\":\"\xe2\x82\"}", ErrNonUTF8},
		{"UTF-16 surrogate encoded in UTF-8", "{\"a\":\"\xed\xa0\x80\"}", ErrNonUTF8},
		{"top-level array", `[{"a":1}]`, ErrWrongType},
		{"top-level string", `"record"`, ErrWrongType},
		{"top-level null", `null`, ErrWrongType},
	}
	for _, f := range Formats() {
		for _, tc := range cases {
			t.Run(string(f)+"/"+tc.name, func(t *testing.T) {
				e := newEnv(t, f, Options{})
				ev := event.Event{Time: 1, Kind: event.KindError}
				det := event.Detail{Message: []byte("stale")}
				require.Equal(t, tc.err, e.d.Decode([]byte(tc.rec), time.Time{}, &ev, &det))
				require.Equal(t, event.Event{}, ev)
				require.Equal(t, event.Detail{}, det)
			})
		}
	}
}

func TestOversizeAndSkew(t *testing.T) {
	for _, f := range Formats() {
		t.Run(string(f), func(t *testing.T) {
			rec := sampleOf(t, f)
			e := newEnv(t, f, Options{})
			var ev event.Event
			require.NoError(t, e.d.Decode(rec, time.Time{}, &ev, nil))
			at := time.Unix(0, ev.Time)

			small := newEnv(t, f, Options{MaxRecordBytes: len(rec) - 1})
			require.Equal(t, ErrOversize, small.d.Decode(rec, time.Time{}, &ev, nil))
			exact := newEnv(t, f, Options{MaxRecordBytes: len(rec)})
			require.NoError(t, exact.d.Decode(rec, time.Time{}, &ev, nil))

			require.NoError(t, e.d.Decode(rec, at.Add(59*time.Minute), &ev, nil))
			require.Equal(t, ErrTimeRange, e.d.Decode(rec, at.Add(61*time.Minute), &ev, nil))
			require.Equal(t, ErrTimeRange, e.d.Decode(rec, at.Add(-61*time.Minute), &ev, nil))
			tight := newEnv(t, f, Options{MaxSkew: 2 * time.Second})
			require.Equal(t, ErrTimeRange, tight.d.Decode(rec, at.Add(3*time.Second), &ev, nil))
			off := newEnv(t, f, Options{MaxSkew: -1})
			require.NoError(t, off.d.Decode(rec, at.Add(1000*time.Hour), &ev, nil))
		})
	}
}

// The decoders allocate nothing per record once warm (interned strings
// seen, buffers grown): the hot-path rule of docs/design.md section 7, and docs/design.md section 7.
func TestDecodeAllocatesNothing(t *testing.T) {
	cases := map[string][]byte{}
	for _, f := range Formats() {
		cases[string(f)] = sampleOf(t, f)
	}
	al := readLines(t, "accesslog.jsonl")
	cases["httpd-accesslog/nested"] = al[1]
	cases["httpd-accesslog/nested-numbers"] = al[3]
	k8s := readLines(t, "mediawiki-k8s.jsonl")
	cases["mediawiki-log/centralauth-frame"] = k8s[1]
	cases["mediawiki-log/wmerrors-fatal"] = k8s[5]
	cases["mediawiki-log/skip"] = k8s[2]
	cases["client-error/escaped"] = []byte(`{"meta": {"dt": "2026-08-21T10:20:01Z"}, "message": "caf\u00e9 \"x\"", "error_context": {"wiki": "testwiki"}}`)
	for name, rec := range cases {
		f, _, _ := strings.Cut(name, "/")
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Format(f), Options{})
			var ev event.Event
			var det event.Detail
			kafka := time.Time{}
			err := e.d.Decode(rec, kafka, &ev, &det) // warm up
			require.True(t, err == nil || err == ErrSkip, "%v", err)
			allocs := testing.AllocsPerRun(200, func() {
				_ = e.d.Decode(rec, kafka, &ev, &det)
			})
			require.Zero(t, allocs)
		})
	}
}

// Rejections allocate nothing either: they are counted per record.
func TestRejectAllocatesNothing(t *testing.T) {
	e := newEnv(t, FormatAccessLog, Options{})
	var ev event.Event
	for _, rec := range []string{`{"a":`, `{"url.domain":"example.org","http.response.status_code":"200","timestamp":"2026-08-21T10:15:42"}`, "{\"a\":\"\xff\"}"} {
		b := []byte(rec)
		require.Error(t, e.d.Decode(b, time.Time{}, &ev, nil))
		allocs := testing.AllocsPerRun(100, func() { _ = e.d.Decode(b, time.Time{}, &ev, nil) })
		require.Zero(t, allocs, rec)
	}
}
