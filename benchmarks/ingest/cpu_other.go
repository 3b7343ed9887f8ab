//go:build !unix

package ingestbench

import "time"

// processCPU cannot be measured here; results then show wall time only.
func processCPU() (time.Duration, bool) { return 0, false }
