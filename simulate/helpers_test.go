package simulate

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"github.com/buger/jsonparser"
	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/require"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// testMap returns the embedded wiki map (parsing it takes about a ms).
func testMap(t testing.TB) *wikimap.Map {
	t.Helper()
	m, err := wikimap.Default()
	require.NoError(t, err)
	return m
}

// errEvent is a decoded error-log record.
type errEvent struct {
	topic string
	time  time.Time
	raw   []byte
	f     map[string]any
}

func (e errEvent) str(key string) string {
	s, _ := e.f[key].(string)
	return s
}

// accessEvent is the part of an access-log record the tests look at.
type accessEvent struct {
	time       time.Time
	deployment string
	release    string
	domain     string
	pod        string
	status     int64
}

// collectWhat says what collect keeps.
type collectWhat uint8

const (
	withErrors collectWhat = 1 << iota // decode every error record
	withAccess                         // extract fields of every access record
	withDigest                         // hash every record
)

// collected is everything a run produced, checked as it streamed.
type collected struct {
	accessCount   int
	accessPerHour [24]int
	gt            GroundTruth
	records       int
	errs          []errEvent
	access        []accessEvent
	samples       [][]byte // every 997th access record, copied
	digest        uint64   // xxhash over topic, key, value, time of every record
	batches       int
	maxBatch      int
}

// collect runs cfg and checks every record's basics on the way: JSON
// validity (all errors, sampled access), event-time order, times in
// [Start, End), and that the Kafka time matches the payload's timestamp.
func collect(t testing.TB, cfg Config, what collectWhat) *collected {
	t.Helper()
	m := testMap(t)
	c := &collected{}
	h := xxhash.New()
	accessPaths := [][]string{
		{"timestamp"}, {"labels", "deployment"}, {"labels", "release"}, {"url.domain"}, {"host", "name"}, {"http.response.status_code"},
	}
	var last time.Time
	intern := map[string]string{}
	in := func(b []byte) string {
		if s, ok := intern[string(b)]; ok {
			return s
		}
		s := string(b)
		intern[s] = s
		return s
	}
	plan, err := Plan(cfg, m)
	require.NoError(t, err)
	var tbuf [8]byte
	sink := func(_ context.Context, batch []Record) error {
		c.batches++
		c.maxBatch = max(c.maxBatch, len(batch))
		for _, r := range batch {
			c.records++
			if what&withDigest != 0 {
				h.Write([]byte(r.Topic))
				h.Write(r.Key)
				h.Write(r.Value)
				binary.BigEndian.PutUint64(tbuf[:], uint64(r.Time.UnixNano()))
				h.Write(tbuf[:])
			}
			if r.Time.Before(last) {
				t.Fatalf("record at %v after one at %v: not in event-time order", r.Time, last)
			}
			last = r.Time
			if r.Time.Before(plan.Start) || !r.Time.Before(plan.End) {
				t.Fatalf("record time %v outside [%v, %v)", r.Time, plan.Start, plan.End)
			}
			if r.Topic == DefaultAccessLog {
				c.accessPerHour[r.Time.Hour()]++
				c.accessCount++
				if what&withAccess == 0 {
					continue
				}
				var a accessEvent
				var ts []byte
				jsonparser.EachKey(r.Value, func(i int, v []byte, _ jsonparser.ValueType, _ error) {
					switch i {
					case 0:
						ts = v
					case 1:
						a.deployment = in(v)
					case 2:
						a.release = in(v)
					case 3:
						a.domain = in(v)
					case 4:
						a.pod = in(v)
					case 5:
						a.status, _ = jsonparser.ParseInt(v)
					}
				}, accessPaths...)
				if string(ts) != r.Time.UTC().Format("2006-01-02T15:04:05") {
					t.Fatalf("access timestamp %q, Kafka time %v", ts, r.Time)
				}
				a.time = r.Time
				c.access = append(c.access, a)
				if c.records%997 == 1 {
					if !json.Valid(r.Value) {
						t.Fatalf("invalid JSON: %s", r.Value)
					}
					c.samples = append(c.samples, bytes.Clone(r.Value))
				}
				continue
			}
			if what&withErrors == 0 {
				continue
			}
			if !json.Valid(r.Value) {
				t.Fatalf("invalid JSON: %s", r.Value)
			}
			var f map[string]any
			require.NoError(t, json.Unmarshal(r.Value, &f))
			e := errEvent{topic: r.Topic, time: r.Time, raw: bytes.Clone(r.Value), f: f}
			ts := e.str("@timestamp")
			at, err := time.Parse(time.RFC3339Nano, ts)
			require.NoError(t, err, "@timestamp %q", ts)
			if !at.Equal(r.Time.Truncate(time.Microsecond)) && !at.Equal(r.Time.Truncate(time.Millisecond)) {
				t.Fatalf("@timestamp %q, Kafka time %v", ts, r.Time)
			}
			require.Equal(t, string(r.Key), e.str("reqId"), "error records are keyed by reqId")
			c.errs = append(c.errs, e)
		}
		return nil
	}
	gt, err := Run(context.Background(), cfg, m, sink)
	require.NoError(t, err)
	require.Equal(t, plan, gt, "Plan and Run agree on the ground truth")
	c.gt = gt
	c.digest = h.Sum64()
	return c
}

// topKeys lists an object's top-level keys in order, duplicates included.
func topKeys(t testing.TB, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, k.(string))
		var v json.RawMessage
		require.NoError(t, dec.Decode(&v))
	}
	return keys
}
