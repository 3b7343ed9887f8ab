//go:build !race

package ingestbench

const testRecords = 20000
