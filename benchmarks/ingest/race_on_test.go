//go:build race

package ingestbench

// testRecords is smaller under the race detector, which slows every
// record's path tenfold.
const testRecords = 4000
