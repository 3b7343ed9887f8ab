package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/stretchr/testify/require"
)

func TestAutoGoMemLimitRatioFailsAtStart(t *testing.T) {
	for _, ratio := range []string{"0", "-0.5", "1.5"} {
		code, _, stderr := runMain(t, "run", "--auto-gomemlimit.ratio="+ratio, "--web.listen-address=127.0.0.1:0")
		require.Equal(t, 1, code, ratio)
		require.Contains(t, stderr, "auto-gomemlimit.ratio", ratio)
		require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
	}
	// Turned off, the ratio is not looked at: the start fails later, on Kafka.
	code, _, stderr := runMain(t, "run", "--no-auto-gomemlimit", "--auto-gomemlimit.ratio=7", "--kafka.brokers=127.0.0.1:1",
		"--web.listen-address=127.0.0.1:0", "--log.level=error")
	require.Equal(t, 1, code)
	require.NotContains(t, stderr, "auto-gomemlimit")
	require.Contains(t, stderr, "no broker reachable")
}

func TestAutoGoMemLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		t.Cleanup(func() { _ = os.Setenv("GOMEMLIMIT", v) })
		require.NoError(t, os.Unsetenv("GOMEMLIMIT"))
	}
	const container = 4 << 30 // a pod's limits.memory of 4 GiB
	quiet := slog.New(slog.DiscardHandler)

	require.NoError(t, setMemLimit(quiet, 0.5, memlimit.Limit(container)))
	require.Equal(t, int64(container/2), debug.SetMemoryLimit(-1), "half the container's limit")

	debug.SetMemoryLimit(before)
	t.Setenv("GOMEMLIMIT", "1GiB") // an operator's explicit limit wins
	require.NoError(t, setMemLimit(quiet, 0.5, memlimit.Limit(container)))
	require.Equal(t, before, debug.SetMemoryLimit(-1), "an explicit GOMEMLIMIT is left alone")
}
