package main

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// opsBusyEnv makes the re-executed test binary spin on one core (TestOpsHelperBusy).
const opsBusyEnv = "DETECTOR_OPS_BUSY"

func TestOpsHelperBusy(t *testing.T) {
	if os.Getenv(opsBusyEnv) != "1" {
		return // not the child
	}
	runtime.GOMAXPROCS(1)
	x := 0
	for {
		x++
	}
}

// opsStartBusy starts n processes that each keep a core busy until the
// test ends: the machine of the issue, with two Kafka-heavy processes.
func opsStartBusy(t *testing.T, n int) {
	t.Helper()
	for range n {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestOpsHelperBusy$", "-test.count=1")
		cmd.Env = append(os.Environ(), opsBusyEnv+"=1")
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			cancel()
			_ = cmd.Wait()
		})
	}
}

// TestOpsDemoExitsUnderLoad: `detector demo --exit-when-done` on a machine
// kept busy by two other processes, so that its readers lag at the story's
// end, still grades the story and exits 0, its readers stopped before its
// broker (TestMain's goleak finds any reader left behind).
func TestOpsDemoExitsUnderLoad(t *testing.T) {
	opsStartBusy(t, 2)
	start := time.Now()
	code, stdout, stderr := runMain(t, "demo", "--exit-when-done", "--speed=240", "--web.listen-address=127.0.0.1:0", "--log.level=warn")
	t.Logf("demo exited %d after %s", code, time.Since(start).Round(time.Second))
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	require.Contains(t, stdout, "FOUND: shared-data-spillover")
	require.NotContains(t, stderr, "no broker reachable")
	require.False(t, strings.Contains(stderr, "reconnecting"), "no reader lost its broker: %s", stderr)
}
