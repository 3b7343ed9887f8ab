//go:build race

package soak

// raceEnabled: the race detector multiplies memory and CPU, so the short
// soak checks only what it measures for correctness.
const raceEnabled = true
