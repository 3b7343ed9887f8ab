package ingestbench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"go.uber.org/goleak"
)

// childEnv makes the test binary act as the broker process: StartChild
// re-executes it with this variable set, as the command re-executes itself.
const childEnv = "INGESTBENCH_TEST_BROKER"

func TestMain(m *testing.M) {
	if topic := os.Getenv(childEnv); topic != "" {
		parts, _ := strconv.Atoi(os.Getenv(childEnv + "_PARTITIONS"))
		if err := ServeBroker(context.Background(), os.Stdin, os.Stdout, topic, parts); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
