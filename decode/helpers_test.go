package decode

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// testEnv is a decoder with the shared state it interns into.
type testEnv struct {
	d        *Decoder
	wikis    *wikimap.Map
	versions *event.Interner
	rollouts *event.Interner
}

func newEnv(t testing.TB, f Format, opts Options) *testEnv {
	t.Helper()
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	versions, rollouts := event.NewInterner(), event.NewInterner()
	d, err := New(f, wikis, versions, rollouts, opts)
	require.NoError(t, err)
	return &testEnv{d: d, wikis: wikis, versions: versions, rollouts: rollouts}
}

// readLines returns the non-empty lines of a testdata file.
func readLines(t testing.TB, name string) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer func() { require.NoError(t, f.Close()) }()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, bytes.Clone(line))
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// yamlInputs returns the input records of a Logstash filter test file:
// Wikimedia's own Logstash tests, copied into testdata (testdata/README.md
// says from where).
func yamlInputs(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	var doc struct {
		Testcases []struct {
			Input []string `yaml:"input"`
		} `yaml:"testcases"`
	}
	require.NoError(t, yaml.Unmarshal(b, &doc))
	var out [][]byte
	for _, tc := range doc.Testcases {
		for _, in := range tc.Input {
			out = append(out, []byte(in))
		}
	}
	return out
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return ts
}

// want is what one record must decode to. Every field is checked; the
// zero value of a field means the decoder must leave it zero.
type want struct {
	err        error
	time       string // RFC 3339
	kind       event.Kind
	wiki       string // dbname
	scope      event.Scope
	role       event.Role
	status     uint16
	durationUS uint32
	version    string // interned mwversion
	rollout    string // interned "<release>-<hash>"
	shared     event.SharedClass

	message, exemplar, class, channel, file, frame, trace, dversion, servergroup, reqID string
}

// check decodes rec and compares every field with w.
func (e *testEnv) check(t *testing.T, rec []byte, kafkaTime time.Time, w want) (event.Event, event.Detail) {
	t.Helper()
	var ev event.Event
	var det event.Detail
	err := e.d.Decode(rec, kafkaTime, &ev, &det)
	if w.err != nil {
		require.ErrorIs(t, err, w.err)
		require.Equal(t, w.err, err, "rejections are returned unwrapped")
		require.Equal(t, event.Event{}, ev, "a rejected record leaves no event")
		return ev, det
	}
	require.NoError(t, err)
	require.Equal(t, mustTime(t, w.time).UnixNano(), ev.Time, "time: got %s", time.Unix(0, ev.Time).UTC().Format(time.RFC3339Nano))
	require.Equal(t, w.kind, ev.Kind, "kind")
	require.Equal(t, w.wiki, e.wikis.Wiki(ev.Wiki).DBName, "wiki")
	require.Equal(t, w.scope, ev.Scope, "scope")
	require.Equal(t, w.role, ev.Role, "role")
	require.Equal(t, w.status, ev.Status, "status")
	require.Equal(t, w.durationUS, ev.DurationUS, "duration")
	require.Equal(t, w.version, e.versions.String(ev.Version), "version")
	require.Equal(t, w.rollout, e.rollouts.String(ev.Rollout), "rollout")
	require.Equal(t, w.shared, ev.Shared, "shared class: got %s", ev.Shared)
	require.Equal(t, w.message, string(det.Message), "detail message")
	require.Equal(t, w.exemplar, string(det.Exemplar), "detail exemplar")
	require.Equal(t, w.class, string(det.Class), "detail class")
	require.Equal(t, w.channel, string(det.Channel), "detail channel")
	require.Equal(t, w.file, string(det.File), "detail file")
	require.Equal(t, w.frame, string(det.Frame), "detail frame")
	require.Equal(t, w.trace, string(det.Trace), "detail trace")
	require.Equal(t, w.dversion, string(det.Version), "detail version")
	require.Equal(t, w.servergroup, string(det.Servergroup), "detail servergroup")
	require.Equal(t, w.reqID, string(det.ReqID), "detail reqId")
	if ev.Kind == event.KindError {
		require.Equal(t, Fingerprint([]byte(w.message), []byte(w.class), []byte(w.file)), ev.Fingerprint, "fingerprint")
		require.NotZero(t, ev.Fingerprint)
	} else {
		require.Zero(t, ev.Fingerprint)
	}
	return ev, det
}
