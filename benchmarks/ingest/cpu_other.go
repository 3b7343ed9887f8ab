//go:build !unix

package ingestbench

import "time"

// ProcessCPU cannot be measured here; results then show wall time only.
func ProcessCPU() (time.Duration, bool) { return 0, false }
