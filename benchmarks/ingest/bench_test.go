package ingestbench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/compress"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// TestRunSmall runs the whole benchmark on a small input, with the broker
// in process and in a child process, and checks that every run read every
// record and that the report says what it measured. It times nothing.
func TestRunSmall(t *testing.T) {
	const records, topic = testRecords, "accesslog-test"
	for _, tc := range []struct {
		name       string
		child      bool
		rounds     int
		readBuffer int
		franz      bool
		fetch      bool
	}{
		{name: "broker=inproc", rounds: 1},
		{name: "broker=child/read-buffer=64KiB/franz-go/client-fetch", child: true, rounds: 2, readBuffer: 64 << 10, franz: true, fetch: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Records: records, Partitions: 3, Rounds: tc.rounds, Topic: topic, ReadBuffer: tc.readBuffer, FranzGo: tc.franz, ClientFetch: tc.fetch, MaxWait: 50 * time.Millisecond}
			if tc.child {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), childEnv+"="+topic, childEnv+"_PARTITIONS=3")
				cmd.Stderr = os.Stderr
				child, err := StartChild(cmd)
				require.NoError(t, err)
				defer func() { require.NoError(t, child.Close()) }()
				cpu, ok := child.CPU()
				require.True(t, ok, "the child reports its CPU time")
				require.Positive(t, cpu)
				cfg.Broker = child
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rep, err := Run(ctx, cfg)
			require.NoError(t, err)
			require.Equal(t, int64(records), rep.Records)
			require.Equal(t, tc.child, rep.BrokerSeparate)
			require.True(t, rep.To.After(rep.From))
			require.Len(t, rep.Rounds, tc.rounds)
			wantRuns := []string{RunRaw, RunConsumer, RunPipeline}
			if tc.readBuffer > 0 {
				wantRuns = append(wantRuns, RunRawBuffered, RunConsumerBuffered)
			}
			if tc.franz {
				wantRuns = append(wantRuns, RunFranzGo)
			}
			if tc.fetch {
				wantRuns = append(wantRuns, RunClientFetch)
			}
			for _, rd := range rep.Rounds {
				require.Len(t, rd.Results, len(wantRuns))
				for i, name := range wantRuns {
					r := rd.Results[i]
					require.Equal(t, name, r.Name)
					require.Equal(t, int64(records), r.Records, name)
					if name == RunFranzGo || name == RunClientFetch {
						require.Equal(t, rep.Bytes, r.Bytes, "%s counts keys and values", name)
					} else {
						// Batch.Read and the ingest counter count values only;
						// keys are 36-byte request ids.
						require.Equal(t, rep.Bytes-36*int64(records), r.Bytes, name)
					}
					require.Positive(t, r.Wall, name)
					if name != RunFranzGo && tc.child { // an in-process broker allocates per record
						// Values are read into reused buffers: what allocates
						// is per fetch, per step, per evaluation.
						require.Less(t, r.Mallocs, uint64(records)/10, "%s: no allocation per record", name)
					}
					require.Equal(t, tc.child, r.BrokerCPU > 0, name)
					if name == RunConsumer || name == RunPipeline || name == RunConsumerBuffered {
						// The simulator's records are all good requests.
						require.Zero(t, r.Rejected, name)
						require.Zero(t, r.Skipped, name)
						require.Equal(t, int64(records), r.Events, name)
					}
				}
				p := rd.Get(RunPipeline)
				require.Equal(t, int64(records), p.Windowed, "every event reached the window")
				require.Positive(t, p.Evaluations, "detect ran")
			}
			var out bytes.Buffer
			require.NoError(t, rep.Write(&out))
			for _, want := range []string{"(a) raw kafka-go ReadBatch", "(b) ingest.Consumer", "(c) pipeline", "b/a", "c/a", "allocs/msg", strconv.Itoa(records)} {
				require.Contains(t, out.String(), want)
			}
			if tc.rounds > 1 {
				require.Contains(t, out.String(), "ranges over the rounds")
			}
		})
	}
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"defaults", Config{}, ""},
		{"negative records", Config{Records: -1}, "records"},
		{"too many partitions", Config{Partitions: 5000}, "partitions"},
		{"bad rate", Config{Rate: -3}, "rate"},
		{"min over max bytes", Config{MinBytes: 10, MaxBytes: 5}, "fetch settings"},
		{"huge read buffer", Config{ReadBuffer: 1 << 30}, "read buffer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.withDefaults()
			if tc.want != "" {
				require.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, DefaultRecords, got.Records)
			require.Equal(t, DefaultPartitions, got.Partitions)
			require.Equal(t, DefaultRate, got.Rate)
			require.Equal(t, 1, got.Rounds)
			require.Equal(t, "mediawiki.httpd.accesslog", got.Topic)
		})
	}
}

// TestLoadCompression: LoadAccessLogs writes its batches with the codec it
// is given (franz-go reports each record's batch codec), so a benchmark's
// "compressed" runs read compressed records.
func TestLoadCompression(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	for _, codec := range []compress.Compression{0, compress.Snappy, compress.Zstd} {
		t.Run(simulate.CompressionName(codec), func(t *testing.T) {
			const topic = "accesslog-codec"
			b, err := StartInProcess(topic, 1)
			require.NoError(t, err)
			defer func() { require.NoError(t, b.Close()) }()
			l, err := LoadAccessLogs(context.Background(), LoadOptions{Addrs: b.Addrs(), Topic: topic, Records: 500, Rate: 2000, Seed: 1, Wikis: wikis, Compression: codec})
			require.NoError(t, err)
			require.Equal(t, int64(500), l.Records)

			cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			require.NoError(t, err)
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n := 0
			for n < 500 {
				fs := cl.PollFetches(ctx)
				require.NoError(t, ctx.Err())
				fs.EachRecord(func(r *kgo.Record) {
					require.Equal(t, uint8(codec), r.Attrs.CompressionType(), "record %d", r.Offset)
					n++
				})
			}
		})
	}
}
