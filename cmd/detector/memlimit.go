package main

import (
	"fmt"
	"log/slog"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// setMemLimit sets Go's soft memory limit to ratio × the container's cgroup
// memory limit, as Prometheus does with --auto-gomemlimit: near the limit
// the runtime collects harder instead of the pod being OOM-killed after a
// fingerprint storm. A GOMEMLIMIT in the environment wins (the library
// leaves it alone), and without a cgroup limit there is nothing to do. It
// changes process-wide state, so only realMain calls it, once, for run.
// limit is where the limit comes from: memlimit.FromCgroup, save in tests.
func setMemLimit(logger *slog.Logger, ratio float64, limit memlimit.Provider) error {
	if !(ratio > 0 && ratio <= 1) {
		return fmt.Errorf("auto-gomemlimit.ratio: %v is not in (0, 1]", ratio)
	}
	// The library's own logger is left out: it reports "skipping" at info
	// level on every machine without a limit. One line of ours is enough.
	set, err := memlimit.SetGoMemLimitWithOpts(memlimit.WithRatio(ratio), memlimit.WithProvider(limit))
	switch {
	case err != nil:
		logger.Warn("Could not set GOMEMLIMIT from the cgroup memory limit; running without one", "err", err)
	case set > 0:
		logger.Info("GOMEMLIMIT set from the cgroup memory limit", "bytes", set, "ratio", ratio)
	default:
		logger.Debug("No cgroup memory limit, or GOMEMLIMIT already set: GOMEMLIMIT left as it is")
	}
	return nil
}
