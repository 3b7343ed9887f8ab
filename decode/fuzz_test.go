package decode

// Fuzz targets, seeded from the real samples in testdata. Run one with e.g.
//
//	go test -run '^$' -fuzz '^FuzzDecodeAccessLog$' -fuzztime 20s ./decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"github.com/wikimedia/pretrain-detector/event"
)

func FuzzDecodeMediaWikiLog(f *testing.F) { fuzzDecode(f, FormatMediaWikiLog) }
func FuzzDecodeAccessLog(f *testing.F)    { fuzzDecode(f, FormatAccessLog) }
func FuzzDecodeAPIRequest(f *testing.F)   { fuzzDecode(f, FormatAPIRequest) }
func FuzzDecodeClientError(f *testing.F)  { fuzzDecode(f, FormatClientError) }
func FuzzDecodeWebrequest(f *testing.F)   { fuzzDecode(f, FormatWebrequest) }

// fuzzSeeds is every sample record in testdata.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, name := range []string{
		"mediawiki-log-events.kafka-input.jsonl", "mediawiki-log-events.logstash-legacy.jsonl", "mediawiki-log-events.logstash-ecs.jsonl",
		"mediawiki-k8s.jsonl", "accesslog.jsonl",
		"event-schemas/mediawiki-api-request-1.0.0.examples.jsonl", "event-schemas/mediawiki-client-error-2.0.0.examples.jsonl",
		"event-schemas/development-webrequest-1.0.0.examples.jsonl", "event-schemas/fragment-common-2.0.0.examples.jsonl",
	} {
		seeds = append(seeds, readLines(t, name)...)
	}
	for _, name := range []string{"logstash-test-mediawiki.yaml", "logstash-test-webrequest.yaml", "logstash-test-clienterror.yaml"} {
		seeds = append(seeds, yamlInputs(t, name)...)
	}
	for _, f := range Formats() {
		seeds = append(seeds, sampleOf(t, f))
	}
	return seeds
}

func fuzzDecode(f *testing.F, format Format) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, int64(0))
		f.Add(s, int64(1787307601e9)) // 2026-08-21T10:20:01Z
	}
	e := newEnv(f, format, Options{})
	f.Fuzz(func(t *testing.T, data []byte, kafkaNS int64) {
		var kafka time.Time
		if kafkaNS != 0 {
			kafka = time.Unix(0, kafkaNS)
		}
		orig := slices.Clone(data)
		var ev event.Event
		var det event.Detail
		err := e.d.Decode(data, kafka, &ev, &det)
		require.Equal(t, orig, data, "Decode must not modify its input")

		// The same answer twice: no state leaks from one record to the next.
		var ev2 event.Event
		var det2 event.Detail
		err2 := e.d.Decode(data, kafka, &ev2, &det2)
		require.Equal(t, err, err2)
		require.Equal(t, ev, ev2)

		switch {
		case err == nil:
			require.NotEqual(t, event.KindNone, ev.Kind)
			require.NotZero(t, ev.Wiki)
			require.NotNil(t, e.wikis.Wiki(ev.Wiki))
			if ev.Kind == event.KindError {
				require.Equal(t, Fingerprint(det.Message, det.Class, det.File), ev.Fingerprint)
				for _, b := range [][]byte{det.Message, det.Exemplar, det.Class, det.Channel, det.File, det.Frame, det.Trace, det.Version} {
					require.True(t, utf8.Valid(b))
				}
			}
		case errors.Is(err, ErrSkip):
		case slices.Contains(RejectReasons, err):
		default:
			t.Fatalf("unexpected error %v", err)
		}

		valid := json.Valid(data)
		switch err {
		case ErrInvalidJSON:
			require.True(t, !valid || nesting(data) >= maxDepth, "encoding/json accepts this")
		case ErrNonUTF8:
			require.False(t, utf8.Valid(data))
		}
		if valid && utf8.Valid(data) && nesting(data) < maxDepth {
			require.NotEqual(t, ErrInvalidJSON, err)
			require.NotEqual(t, ErrNonUTF8, err)
		}
	})
}

// nesting is the maximum depth of arrays and objects in valid JSON.
func nesting(data []byte) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	depth, maxDepth := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return maxDepth
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
				maxDepth = max(maxDepth, depth)
			} else {
				depth--
			}
		}
	}
}

func FuzzParseTimestamp(f *testing.F) {
	// RFC 3339's offset: hours 00–23, minutes 00–59. time.Parse also takes
	// minutes of 60 ("+00:60"), which the parser rightly refuses.
	rfc3339 := regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$`)
	for _, s := range []string{"2020-06-08T04:23:54.618073+00:00", "2022-06-08T14:24:55.175Z", "2023-01-18T15:41:07",
		"2021-01-01T00:00:00.0Z", "2026-08-21 10:00:00+0200", "0000-01-01T00:00:00Z", "2262-04-11T23:47:16.854775807Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ns, _, ok := parseTimestamp([]byte(s))
		ref, err := time.Parse(time.RFC3339Nano, s)
		// time.Parse also takes a one-digit hour, which RFC 3339 does not.
		inRange := err == nil && ref.Year() >= 1678 && ref.Year() <= 2261 && rfc3339.MatchString(s)
		if inRange {
			require.True(t, ok, "time.Parse accepts %q", s)
			require.Equal(t, ref.UnixNano(), ns, s)
		}
		if ok && err == nil {
			require.Equal(t, ref.UnixNano(), ns, s)
		}
	})
}

func FuzzUnescape(f *testing.F) {
	for _, s := range []string{`plain`, `a\"b`, `\u00e9\ud83d\ude00`, `\ud83d`, `Wikimedia\\Rdbms`, "é", `\u0000\n`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		quoted := append(append([]byte{'"'}, content...), '"')
		end, _, err := scanString(quoted, 1)
		var ref string
		refErr := json.Unmarshal(quoted, &ref)
		switch {
		case err == ErrInvalidJSON:
			require.Error(t, refErr, "%q", quoted)
		case err == ErrNonUTF8:
			require.False(t, utf8.Valid(content))
		}
		if err != nil || end != len(quoted)-1 {
			if err == nil {
				// An unescaped quote inside: a shorter string, then garbage.
				require.Error(t, refErr)
			}
			return
		}
		require.NoError(t, refErr, "%q", quoted)
		require.Equal(t, ref, string(appendUnescaped(nil, content)))
	})
}
