//go:build race

package window

// raceEnabled skips the tests whose heap measurements the race detector
// distorts (and makes very slow).
const raceEnabled = true
