package main

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// opsGarbageKind is one way a record can be bad, and the rejection reason
// the detector must count it under, by topic format.
type opsGarbageKind struct {
	name string
	// reason for mediawiki-log and httpd-accesslog records; "" means the
	// kind does not apply to that format.
	mwReason, alReason string
	mutate             func(rng *rand.Rand, v []byte, t time.Time) ([]byte, time.Time)
	// applies, when set, says whether the kind can spoil a record of
	// time t; nil: any.
	applies func(t time.Time) bool
}

// spoils says whether the kind changes src at all (with a throwaway
// random source, so the mixer's own stays as it was).
func (k opsGarbageKind) spoils(src kafka.Message) bool {
	v, t := k.mutate(rand.New(rand.NewPCG(1, 2)), src.Value, src.Time)
	return !bytes.Equal(v, src.Value) || !t.Equal(src.Time)
}

var opsStatusRe = regexp.MustCompile(`"http\.response\.status_code":\d+`)

// opsTimestampRe matches the timestamps of both formats (the date and
// time; any fraction and zone follow unchanged).
var opsTimestampRe = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}`)

// opsShiftTimes rewrites every timestamp in v by fn.
func opsShiftTimes(v []byte, fn func(time.Time) time.Time) []byte {
	return opsTimestampRe.ReplaceAllFunc(v, func(b []byte) []byte {
		t, err := time.Parse("2006-01-02T15:04:05", string(b))
		if err != nil {
			return b
		}
		return []byte(fn(t).Format("2006-01-02T15:04:05"))
	})
}

func opsGarbageKinds() []opsGarbageKind {
	setYear := func(year string) func(*rand.Rand, []byte, time.Time) ([]byte, time.Time) {
		return func(_ *rand.Rand, v []byte, t time.Time) ([]byte, time.Time) {
			return opsTimestampRe.ReplaceAllFunc(v, func(b []byte) []byte { return append([]byte(year), b[4:]...) }), t
		}
	}
	return []opsGarbageKind{
		{"random bytes", "invalid_json", "invalid_json", func(rng *rand.Rand, _ []byte, t time.Time) ([]byte, time.Time) {
			b := make([]byte, 1+rng.IntN(600))
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			b[0] = 0xff // never a JSON value's first byte
			return b, t
		}, nil},
		{"truncated JSON", "invalid_json", "invalid_json", func(rng *rand.Rand, v []byte, t time.Time) ([]byte, time.Time) {
			return bytes.Clone(v[:1+rng.IntN(len(v)-2)]), t
		}, nil},
		{"not an object", "wrong_type", "wrong_type", func(_ *rand.Rand, v []byte, t time.Time) ([]byte, time.Time) {
			return append(append([]byte("["), v...), ']'), t
		}, nil},
		{"field of the wrong type", "wrong_type", "wrong_type", func(_ *rand.Rand, v []byte, t time.Time) ([]byte, time.Time) {
			v = opsStatusRe.ReplaceAll(v, []byte(`"http.response.status_code":{"code":"OK"}`))
			return bytes.Replace(v, []byte(`"wiki":"`), []byte(`"wiki":42,"was":"`), 1), t
		}, nil},
		{"non-UTF-8", "non_utf8", "non_utf8", func(_ *rand.Rand, v []byte, t time.Time) ([]byte, time.Time) {
			v = bytes.Replace(v, []byte(`"url.path":"/`), []byte("\"url.path\":\"/\xff\xfe"), 1)
			return bytes.Replace(v, []byte(`"message":"`), []byte("\"message\":\"\xc3\x28"), 1), t
		}, nil},
		{"year 9999", "wrong_type", "wrong_type", setYear("9999"), nil},
		{"year 1970 in a record of today", "time_out_of_range", "time_out_of_range", setYear("1970"), nil},
		// A producer whose clock runs 90 minutes fast: record and Kafka
		// timestamp agree, so only the wall clock can tell, and only when
		// the result lies in the future (a record of two hours ago so
		// spoiled looks like one of half an hour ago, and is one).
		{"clock 90 min fast", "time_out_of_range", "time_out_of_range", func(_ *rand.Rand, v []byte, t time.Time) ([]byte, time.Time) {
			fast := func(t time.Time) time.Time { return t.Add(90 * time.Minute) }
			return opsShiftTimes(v, fast), fast(t)
		}, func(t time.Time) bool { return t.Add(90 * time.Minute).After(time.Now().Add(time.Minute)) }},
		{"unknown wiki", "unknown_wiki", "unknown_wiki", func(_ *rand.Rand, v []byte, t time.Time) ([]byte, time.Time) {
			v = bytes.Replace(v, []byte(`"url.domain":"`), []byte(`"url.domain":"nowhere.example.`), 1)
			return bytes.Replace(v, []byte(`"wiki":"`), []byte(`"wiki":"nowhere`), 1), t
		}, nil},
		{"empty object", "", "missing_field", func(_ *rand.Rand, _ []byte, t time.Time) ([]byte, time.Time) {
			return []byte("{}"), t
		}, nil},
	}
}

// opsOversize is a 5-MB record: a real one with a 5-MB field.
func opsOversize(v []byte) []byte {
	out := make([]byte, 0, len(v)+5<<20+16)
	out = append(out, v[:len(v)-1]...)
	out = append(out, `,"pad":"`...)
	out = append(out, bytes.Repeat([]byte("x"), 5<<20)...)
	return append(out, `"}`...)
}

// opsGarbageMixer adds one bad record for every four real ones (20% of
// the stream), cycling through the kinds, plus a 5-MB record every
// oversizeEvery bad records, and tallies the reason each must be counted
// under. It spoils only records the detector's own decoders accept, so
// that the reason is the spoiling's; where none of four is such a record
// it adds random bytes.
type opsGarbageMixer struct {
	rng           *rand.Rand
	kinds         []opsGarbageKind
	decoders      map[string]*decode.Decoder
	next          int
	n             int
	oversizeEvery int
	want          map[string]int64 // by reason
	byKind        map[string]int64
}

func newOpsGarbageMixer(t *testing.T, oversizeEvery int) *opsGarbageMixer {
	t.Helper()
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	m := &opsGarbageMixer{rng: rand.New(rand.NewPCG(1, 2)), kinds: opsGarbageKinds(), oversizeEvery: oversizeEvery,
		decoders: map[string]*decode.Decoder{}, want: map[string]int64{}, byKind: map[string]int64{}}
	for _, topic := range opsTopics {
		f := decode.FormatMediaWikiLog
		if topic == "mediawiki.httpd.accesslog" {
			f = decode.FormatAccessLog
		}
		m.decoders[topic], err = decode.New(f, wikis, event.NewInterner(), event.NewInterner(), decode.Options{})
		require.NoError(t, err)
	}
	return m
}

func (m *opsGarbageMixer) accepted(msg kafka.Message) bool {
	var ev event.Event
	return m.decoders[msg.Topic].Decode(msg.Value, msg.Time, &ev, nil) == nil
}

func (m *opsGarbageMixer) mix(batch []kafka.Message) ([]kafka.Message, int) {
	real := len(batch)
	added := 0
	for i := 0; i < real; i += 4 {
		m.n++
		src, ok := batch[i], false
		for j := i; j < min(i+4, real) && !ok; j++ {
			if m.accepted(batch[j]) {
				src, ok = batch[j], true
			}
		}
		kind := m.kinds[0] // random bytes
		switch {
		case ok && m.oversizeEvery > 0 && m.n%m.oversizeEvery == 0:
			batch = append(batch, kafka.Message{Topic: src.Topic, Key: src.Key, Value: opsOversize(src.Value), Time: src.Time})
			m.want["oversize"]++
			m.byKind["5 MB record"]++
			added++
			continue
		case ok:
			for {
				kind = m.kinds[m.next%len(m.kinds)]
				m.next++
				fits := (src.Topic == "mediawiki.httpd.accesslog" && kind.alReason != "") || (src.Topic != "mediawiki.httpd.accesslog" && kind.mwReason != "")
				// A mutation that finds nothing to spoil in this record (a
				// log line without the field it retypes) leaves it good:
				// another kind is taken, or it would be counted as bad.
				if fits && (kind.applies == nil || kind.applies(src.Time)) && kind.spoils(src) {
					break
				}
			}
		}
		reason := kind.mwReason
		if src.Topic == "mediawiki.httpd.accesslog" {
			reason = kind.alReason
		}
		v, t := kind.mutate(m.rng, src.Value, src.Time)
		batch = append(batch, kafka.Message{Topic: src.Topic, Key: src.Key, Value: v, Time: t})
		m.want[reason]++
		m.byKind[kind.name]++
		added++
	}
	return batch, added
}

// TestOpsBadInputAtVolume writes a real incident's traffic with 20% of
// bad records mixed in, every kind of bad at once, and checks that the
// daemon does not stop, still finds the incident, and counts every bad
// record under its reason.
func TestOpsBadInputAtVolume(t *testing.T) {
	sinceOnset := 12 * time.Minute
	if *opsLong {
		sinceOnset = 40 * time.Minute
	}
	k := opsStartKafka(t, 2, opsTopics)
	mixer := newOpsGarbageMixer(t, 2500)
	f := opsStartFeeder(t, k, opsFeed{Scenario: "spillover-jobrunner", Seed: 1, SinceOnset: sinceOnset, Rate: 20, Mix: mixer.mix})
	f.Wait(t)
	_, total := f.Written()
	garbage := f.Extra()
	require.InDelta(t, 0.2, float64(garbage)/float64(total), 0.01, "a fifth of the stream is bad")
	t.Logf("wrote %d records, %d of them bad: %v", total, garbage, mixer.byKind)

	cfg := opsWriteFile(t, t.TempDir(), "detector.yml", opsConfig{Brokers: k.Addr()}.YAML())
	d := opsStartDaemon(t, opsDaemonOptions{ConfigFile: cfg})
	h := d.HTTP()
	h.WaitReady(t, 60*time.Second)
	fd := h.WaitFinding(t, detect.KindSharedDataSpillover, 60*time.Second)
	t.Logf("found: %s", fd.Summary)

	var m opsMetrics
	require.Eventually(t, func() bool {
		m = h.Metrics(t)
		return int64(m.Sum("detector_ingest_records_total")) == total
	}, 30*time.Second, 200*time.Millisecond, "every record read")
	got := map[string]int64{}
	for reason, v := range m.By("detector_ingest_records_rejected_total", "reason") {
		if v > 0 {
			got[reason] = int64(v)
		}
	}
	require.Equal(t, mixer.want, got, "rejections by reason")
	require.Equal(t, garbage, int64(m.Sum("detector_ingest_records_rejected_total")))

	select {
	case err := <-d.Done():
		t.Fatalf("the daemon stopped: %v", err)
	default:
	}
	code, _ := h.Get(t, "/-/healthy")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, d.Logs.String(), "Rejected record (sampled)")
}
