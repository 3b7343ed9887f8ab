package replaybench

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/compress"
	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/simulate"
)

// TestRunSmall runs the benchmark on a few records with the broker in
// process, uncompressed and compressed as Wikimedia's producers write:
// every run reads every record, and the report says what it must.
func TestRunSmall(t *testing.T) {
	for _, codec := range []compress.Compression{0, compress.Snappy} {
		t.Run(simulate.CompressionName(codec), func(t *testing.T) {
			rep, err := Run(context.Background(), Config{Records: 30_000, Rounds: 2, Partitions: 3, Compression: codec})
			require.NoError(t, err)
			require.Equal(t, int64(30_000), rep.Records)
			require.Len(t, rep.Rounds, 2)
			for _, rd := range rep.Rounds {
				require.Equal(t, rep.Records, rd.Raw.Records)
				require.Equal(t, rep.Records, rd.Replay.Records)
				require.Positive(t, rd.Raw.Bytes)
				require.Positive(t, rd.Replay.Events)
				require.Positive(t, rd.Ratio())
			}
			require.Equal(t, 1.728e9, rep.DayRecords(), "20k requests/s for a day")
			require.Equal(t, time.Duration(rep.DayRecords()/rep.ReplayRate()*1e9), rep.Day())
			require.Greater(t, rep.Day(), time.Minute)

			var b bytes.Buffer
			require.NoError(t, rep.Write(&b))
			for _, s := range []string{"replay/raw", "median replay/raw", "replay allocs/record", "median replay records/s",
				"one simulated day at 20000 requests/s", "batches compressed: " + simulate.CompressionName(codec)} {
				require.Contains(t, b.String(), s)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative records", Config{Records: -1}, "records"},
		{"too many partitions", Config{Partitions: 5000}, "partitions"},
		{"negative rate", Config{Rate: -3}, "rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestWriteBudget: with the broker's CPU read, the report adds the CPU
// both processes spend per record (the median over the rounds where it was
// read) and what the cores allow at the bar; without it, a dash and no
// budget line.
func TestWriteBudget(t *testing.T) {
	round := func(rawClient, rawBroker, repClient, repBroker time.Duration, brokerOK bool) Round {
		return Round{
			Raw:    Result{Records: 1000, Wall: time.Millisecond, CPU: rawClient, BrokerCPU: rawBroker, BrokerOK: brokerOK},
			Replay: Result{Records: 1000, Wall: 2 * time.Millisecond, CPU: repClient, BrokerCPU: repBroker, BrokerOK: brokerOK},
		}
	}
	us := time.Microsecond
	rep := &Report{Records: 1000, NumCPU: 2, Rounds: []Round{
		round(500*us, 1200*us, 2000*us, 1400*us, true),
		round(600*us, 1300*us, 2200*us, 1600*us, true),
		round(9000*us, 0, 9000*us, 0, false), // the broker did not answer: left out
	}}
	var b bytes.Buffer
	require.NoError(t, rep.Write(&b))
	out := b.String()
	require.Contains(t, out, "CPU per record, client and broker together (median of 2 rounds): raw 1.80 µs, replay 3.60 µs; at 1000000 records/s, 2 cores allow 2.00 µs per record")
	require.Contains(t, out, "0.50+1.20")
	require.Contains(t, out, "2.20+1.60")
	require.Contains(t, out, "9.00+-")

	rep.Rounds = rep.Rounds[2:]
	b.Reset()
	require.NoError(t, rep.Write(&b))
	require.NotContains(t, b.String(), "client and broker together")
}
