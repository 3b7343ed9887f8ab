package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"

	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = realMain(args, &o, &e)
	return code, o.String(), e.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runMain(t, "version")
	require.Equal(t, 0, code)
	require.Contains(t, out, "detector, version")
	require.Contains(t, out, "go version:")
}

func TestBadConfigFailsAtStartNamingTheField(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "window:\n  buckets: 10s\n", `unknown field "buckets" in window`},
		{"bad value", "detect:\n  alpha: 2\n", "field detect.alpha"},
		{"bad format", "kafka:\n  clusters:\n  - name: a\n    brokers: [h:1]\n    topics: [{name: t, format: xml}]\n", "field kafka.clusters[0].topics[0].format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yml")
			require.NoError(t, os.WriteFile(p, []byte(tc.yaml), 0o600))
			code, _, stderr := runMain(t, "--config.file="+p, "run", "--web.listen-address=127.0.0.1:0")
			require.Equal(t, 1, code)
			require.Contains(t, stderr, tc.want)
			require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
		})
	}
	code, _, stderr := runMain(t, "--config.file="+filepath.Join(dir, "missing.yml"), "run")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "missing.yml")
}

func TestUnreachableBrokerFailsAtStart(t *testing.T) {
	start := time.Now()
	code, _, stderr := runMain(t, "run", "--kafka.brokers=127.0.0.1:1", "--web.listen-address=127.0.0.1:0", "--log.level=error")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "no broker reachable")
	require.Contains(t, stderr, "127.0.0.1:1")
	require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
	require.Less(t, time.Since(start), 15*time.Second)
}

// TestSimulateFillsABrokerWithRealFormats runs `detector simulate` against
// a separately running Kafka-protocol broker and decodes every record with
// the pipeline's own decoders.
func TestSimulateFillsABrokerWithRealFormats(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer c.Close()
	truth := filepath.Join(t.TempDir(), "truth.json")
	code, _, stderr := runMain(t, "simulate", "--kafka.brokers="+strings.Join(c.ListenAddrs(), ","), "--scenario=demo",
		"--duration=45m", "--rate=60", "--truth="+truth, "--log.level=error")
	require.Equal(t, 0, code, stderr)

	var gt simulate.GroundTruth
	b, err := os.ReadFile(truth)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &gt))
	require.Equal(t, "demo", gt.Scenario)
	require.NotEmpty(t, gt.Deploys)

	wikis, err := wikimap.Default()
	require.NoError(t, err)
	formats := map[string]decode.Format{"k8s-mw-eqiad": decode.FormatMediaWikiLog, "k8s-mw-codfw": decode.FormatMediaWikiLog, "mediawiki.httpd.accesslog": decode.FormatAccessLog}
	kinds := map[event.Kind]int{}
	injected := 0
	for topic, f := range formats {
		dec, err := decode.New(f, wikis, event.NewInterner(), event.NewInterner(), decode.Options{})
		require.NoError(t, err)
		n := readAll(t, c.ListenAddrs(), topic, func(m kafka.Message) {
			var ev event.Event
			var det event.Detail
			err := dec.Decode(m.Value, m.Time, &ev, &det)
			if errors.Is(err, decode.ErrSkip) {
				return
			}
			require.NoError(t, err, "%s offset %d: %s", topic, m.Offset, m.Value)
			kinds[ev.Kind]++
			for _, inc := range gt.Incidents {
				if ev.Kind == event.KindError && inc.NormalizedMessage != "" && strings.Contains(inc.NormalizedMessage, string(det.Message)) {
					injected++
				}
			}
		})
		require.Positive(t, n, topic)
	}
	require.Greater(t, kinds[event.KindRequest], 50000)
	require.Positive(t, kinds[event.KindError])
	require.Positive(t, injected, "the scripted errors are in the stream")
}

func readAll(t *testing.T, brokers []string, topic string, fn func(kafka.Message)) int {
	t.Helper()
	conn, err := kafka.Dial("tcp", brokers[0])
	require.NoError(t, err)
	parts, err := conn.ReadPartitions(topic)
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	n := 0
	for _, p := range parts {
		pc, err := kafka.DialLeader(context.Background(), "tcp", brokers[0], topic, p.ID)
		require.NoError(t, err)
		last, err := pc.ReadLastOffset()
		require.NoError(t, err)
		first, err := pc.ReadFirstOffset()
		require.NoError(t, err)
		_, err = pc.Seek(first, kafka.SeekAbsolute)
		require.NoError(t, err)
		for off := first; off < last; {
			require.NoError(t, pc.SetReadDeadline(time.Now().Add(10*time.Second)))
			batch := pc.ReadBatch(1, 16<<20)
			for {
				m, err := batch.ReadMessage()
				if err != nil {
					break
				}
				off = m.Offset + 1
				fn(m)
				n++
			}
			_ = batch.Close()
		}
		require.NoError(t, pc.Close())
	}
	return n
}

// TestSimulateListNeedsNoBroker: listing the scenarios talks to no Kafka;
// simulating without brokers fails naming the flag.
func TestSimulateListNeedsNoBroker(t *testing.T) {
	code, out, stderr := runMain(t, "simulate", "--list")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "spillover-s3")
	require.Contains(t, out, "demo")
	code, _, stderr = runMain(t, "simulate", "--scenario=quiet")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "--kafka.brokers")
}

func TestHelpPrintsAndStops(t *testing.T) {
	start := time.Now()
	code, out, _ := runMain(t, "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "replay")
	require.Less(t, time.Since(start), 2*time.Second, "help must not start the daemon")
}
