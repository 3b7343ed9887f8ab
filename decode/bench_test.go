package decode

// Decoder micro-benchmarks. Run:
//
//	go test -run '^$' -bench . -benchmem ./decode
//
// Compare runs with benchstat over -count=6 (docs/design.md section 8).

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/buger/jsonparser"
	"github.com/wikimedia/pretrain-detector/event"
)

func BenchmarkDecode(b *testing.B) {
	al := readLines(b, "accesslog.jsonl")
	k8s := readLines(b, "mediawiki-k8s.jsonl")
	kafkaIn := readLines(b, "mediawiki-log-events.kafka-input.jsonl")
	cases := []struct {
		name   string
		format Format
		rec    []byte
	}{
		{"format=httpd-accesslog/shape=flat", FormatAccessLog, al[0]},
		{"format=httpd-accesslog/shape=nested", FormatAccessLog, al[1]},
		{"format=httpd-accesslog/shape=nested-numbers", FormatAccessLog, al[3]},
		{"format=mediawiki-log/record=k8s-exception-rdbms", FormatMediaWikiLog, k8s[0]},
		{"format=mediawiki-log/record=k8s-exception-centralauth-frame", FormatMediaWikiLog, k8s[1]},
		{"format=mediawiki-log/record=k8s-rdbms-channel", FormatMediaWikiLog, k8s[3]},
		{"format=mediawiki-log/record=k8s-info-skipped", FormatMediaWikiLog, k8s[4]},
		{"format=mediawiki-log/record=kafka-input-memcached", FormatMediaWikiLog, kafkaIn[0]},
		{"format=api-request/record=success", FormatAPIRequest, sampleOf(b, FormatAPIRequest)},
		{"format=client-error/record=typeerror", FormatClientError, sampleOf(b, FormatClientError)},
		{"format=webrequest/record=schema-example", FormatWebrequest, sampleOf(b, FormatWebrequest)},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, bc.format, Options{})
			var ev event.Event
			var det event.Detail
			if err := e.d.Decode(bc.rec, time.Time{}, &ev, &det); err != nil && err != ErrSkip {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.rec)))
			for b.Loop() {
				_ = e.d.Decode(bc.rec, time.Time{}, &ev, &det)
			}
		})
	}
}

// BenchmarkBaseline puts the access-log decoder beside what it replaces or
// contains: a bare UTF-8 check (which the scanner folds into its string
// scan), the plain-ASCII pre-check that lets it find string ends with
// bytes.IndexByte, encoding/json's validation, the scan alone, and
// jsonparser.EachKey extracting the flat fields without validating anything.
func BenchmarkBaseline(b *testing.B) {
	rec := readLines(b, "accesslog.jsonl")[0]
	b.Run("op=utf8.Valid", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(rec)))
		for b.Loop() {
			if !utf8.Valid(rec) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("op=plainASCII", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(rec)))
		for b.Loop() {
			if !plainASCII(rec) {
				b.Fatal("not plain")
			}
		}
	})
	b.Run("op=json.Valid", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(rec)))
		for b.Loop() {
			if !json.Valid(rec) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("op=scan-only", func(b *testing.B) {
		e := newEnv(b, FormatAccessLog, Options{})
		b.ReportAllocs()
		b.SetBytes(int64(len(rec)))
		for b.Loop() {
			if err := e.d.scan(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=jsonparser.EachKey-flat", func(b *testing.B) {
		paths := [][]string{{"url.domain"}, {"http.response.status_code"}, {"event.duration"}, {"timestamp"}, {"labels", "deployment"}, {"labels", "release"}, {"orchestrator", "resource", "name"}}
		n := 0
		b.ReportAllocs()
		b.SetBytes(int64(len(rec)))
		for b.Loop() {
			jsonparser.EachKey(rec, func(int, []byte, jsonparser.ValueType, error) { n++ }, paths...)
		}
		if n == 0 {
			b.Fatal("no fields")
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	k8s := readLines(b, "mediawiki-k8s.jsonl")
	e := newEnv(b, FormatMediaWikiLog, Options{})
	var ev event.Event
	var det event.Detail
	if err := e.d.Decode(k8s[1], time.Time{}, &ev, &det); err != nil {
		b.Fatal(err)
	}
	c := DefaultClassifier()
	ch, file, trace := append([]byte(nil), det.Channel...), append([]byte(nil), det.File...), append([]byte(nil), det.Trace...)
	b.ReportAllocs()
	b.SetBytes(int64(len(trace)))
	for b.Loop() {
		c.Classify(ch, file, trace)
	}
}

func BenchmarkFingerprint(b *testing.B) {
	m := []byte(`[{reqId}] {exception_url}   Wikimedia\Rdbms\DBQueryError: Error {errno}: {errstr}`)
	c := []byte(`Wikimedia\Rdbms\DBQueryError`)
	f := []byte("/srv/mediawiki/php-1.47.0-wmf.16/includes/libs/rdbms/database/Database.php:1198")
	b.ReportAllocs()
	for b.Loop() {
		Fingerprint(m, c, f)
	}
}
