package soak

import (
	"context"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// loadEnv makes the test binary the load process (RunLoad on its stdin and
// stdout) instead of running tests.
const loadEnv = "SOAK_TEST_LOAD_PROCESS"

func TestMain(m *testing.M) {
	if os.Getenv(loadEnv) == "1" {
		if err := RunLoad(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "load process: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
