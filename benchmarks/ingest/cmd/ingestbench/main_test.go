package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain lets the test binary be the broker process the command starts
// by re-executing itself (os.Executable is the test binary here).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "broker" {
		os.Exit(realMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

func TestRealMain(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"child broker", []string{"run", "--records=5000", "--partitions=2", "--log.level=warn"}, 0,
			[]string{"kfake in a child process", "(c) pipeline", "c/a"}},
		{"in-process broker, default command", []string{"--records=5000", "--broker=inproc", "--read-buffer=65536", "--log.level=warn"}, 0,
			[]string{"kfake in this process", "(b') consumer, buffered conn"}},
		{"bad flag", []string{"--broker=elsewhere"}, 2, nil},
		{"bad config", []string{"--records=-5", "--broker=inproc"}, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := realMain(tc.args, strings.NewReader(""), &stdout, &stderr)
			require.Equal(t, tc.code, code, "stderr: %s", stderr.String())
			for _, w := range tc.want {
				require.Contains(t, stdout.String(), w)
			}
		})
	}
}
