package soak

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSoakShort is the short form of the soak: 20 s at 20k request events/s
// with a storm of 100k new fingerprints, through the same code as the full
// run (go run ./benchmarks/soak/cmd/soak). It checks what the full run is
// judged by: nothing lost, memory within the window's bound plus a fixed
// allowance, the catalogue at its cap while the storm is counted as
// evictions, lag bounded, no goroutine left behind (and goleak in
// TestMain). Its numbers are not a benchmark: the machine is shared.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak's short form takes 25 s")
	}
	var progress, loadErr bytes.Buffer
	cfg := Config{
		Duration: 20 * time.Second, Rate: 20_000, StormFingerprints: 100_000,
		StormAt: 5 * time.Second, StormFor: 5 * time.Second, Sample: 2 * time.Second,
		AccessLogPartitions: 4, RetentionBytes: 64 << 20, Drain: 30 * time.Second,
		Progress: &progress,
		Load: func() *exec.Cmd {
			c := exec.Command(os.Args[0], "-test.run=^$")
			c.Env = append(os.Environ(), loadEnv+"=1")
			c.Stderr = &loadErr
			return c
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	var out bytes.Buffer
	rep.Print(&out)
	t.Logf("\n%s", out.String())
	require.NoError(t, err, "load process: %s", loadErr.String())
	require.Empty(t, rep.LoadErr)

	sum := rep.Summary()
	require.GreaterOrEqual(t, len(rep.Samples), 9, "a sample every 2 s")
	require.Positive(t, rep.Written)
	require.Zero(t, rep.Failed, "the broker took every record")
	require.Zero(t, rep.Lost(), "every record written was read")
	require.Zero(t, rep.OffsetResets, "no reader fell behind retention")
	require.Zero(t, rep.Rejected)
	require.Equal(t, int64(100_000), rep.StormWritten)
	require.InDelta(t, cfg.Rate, sum.WrittenPerSec, cfg.Rate*0.15, "the rate asked for, give or take the simulator's noise")

	last := rep.Samples[len(rep.Samples)-1]
	require.LessOrEqual(t, last.Catalogue, rep.CatalogueCap, "the catalogue stays within its cap")
	require.Positive(t, last.Evictions, "the storm overflowed the catalogue and was counted")
	require.LessOrEqual(t, last.CacheBytes, rep.CacheMaxBytes)
	require.LessOrEqual(t, rep.GoroutinesAfter, rep.GoroutinesBefore, "no goroutine left behind")
	if raceEnabled {
		return // memory and speed mean nothing under the race detector
	}
	// The window's own bound plus a fixed allowance for the Go runtime,
	// kafka-go's buffers, the decoders and this test binary.
	const allowance = 256 << 20
	require.LessOrEqual(t, sum.MaxRSS, rep.MemoryBound+allowance, "RSS within the configured caps")
	require.Less(t, sum.MaxWatermarkDelay, 45*time.Second, "the watermark keeps up: allowed lateness (30 s) plus a little")
	require.Less(t, sum.MaxLagRecords, float64(5*cfg.Rate), "lag under five seconds of traffic")
}
