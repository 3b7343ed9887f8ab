package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFlags checks the command line; the soak itself is exercised by the
// package's TestSoakShort, through the same soak.Run.
func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  []string // in stdout
		err  string   // in stderr
	}{
		{name: "help", args: []string{"--help"}, code: 0, out: []string{"Soak the detector's pipeline", "run*"}},
		{name: "run help", args: []string{"run", "--help"}, code: 0,
			out: []string{"--duration=10m", "--rate=210000", "--storm=1000000", "--sample=10s", "--compression=snappy"}},
		{name: "unknown flag", args: []string{"--nope"}, code: 2, err: "unknown long flag '--nope'"},
		{name: "bad compression", args: []string{"--compression=brotli"}, code: 2, err: "enum value must be one of snappy,lz4,zstd,none"},
		{name: "bad duration", args: []string{"--duration=soon"}, code: 2, err: "soon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := realMain(tc.args, strings.NewReader(""), &out, &errOut)
			require.Equal(t, tc.code, code, "stderr: %s", errOut.String())
			for _, s := range tc.out {
				require.Contains(t, out.String(), s)
			}
			require.Contains(t, errOut.String(), tc.err)
		})
	}
}
