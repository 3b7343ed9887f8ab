package decode

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseTimestamp(t *testing.T) {
	cases := []struct {
		in   string
		want string // RFC 3339 in UTC; "" = rejected
		frac bool
	}{
		{"2020-06-08T04:23:54.618073+00:00", "2020-06-08T04:23:54.618073Z", true},
		{"2022-06-08T14:24:55.175Z", "2022-06-08T14:24:55.175Z", true},
		{"2021-01-01T00:00:00.0Z", "2021-01-01T00:00:00Z", true},
		{"2023-01-18T15:41:07", "2023-01-18T15:41:07Z", false},
		{"2023-01-18 15:41:07+0000", "2023-01-18T15:41:07Z", false},
		{"2026-08-21T10:00:00.25+02:00", "2026-08-21T08:00:00.25Z", true},
		{"2026-08-21T10:00:00-05:30", "2026-08-21T15:30:00Z", false},
		{"2026-08-21T10:00:00+02", "2026-08-21T08:00:00Z", false},
		{"2026-08-21t10:00:00z", "2026-08-21T10:00:00Z", false},
		{"2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z", false},
		{"2000-02-29T00:00:00Z", "2000-02-29T00:00:00Z", false},
		{"1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z", false},
		{"1969-12-31T23:59:59.999999999Z", "1969-12-31T23:59:59.999999999Z", true},
		{"2026-08-21T10:00:00.1234567891234Z", "2026-08-21T10:00:00.123456789Z", true},
		{"2023-02-29T00:00:00Z", "", false},
		{"1900-02-29T00:00:00Z", "", false},
		{"2026-13-01T00:00:00Z", "", false},
		{"2026-00-01T00:00:00Z", "", false},
		{"2026-04-31T00:00:00Z", "", false},
		{"2026-08-21T24:00:00Z", "", false},
		{"2026-08-21T23:60:00Z", "", false},
		{"2026-08-21T23:59:60Z", "", false},
		{"2026-08-21T10:00:00.Z", "", false},
		{"2026-08-21T10:00:00+25:00", "", false},
		{"2026-08-21T10:00:00+0", "", false},
		{"2026-08-21T10:00:00ZZ", "", false},
		{"2026-08-21", "", false},
		{"2026/08/21T10:00:00Z", "", false},
		{"21/Aug/2026:10:15:42 +0000", "", false},
		{"1500-01-01T00:00:00Z", "", false}, // before int64 nanoseconds begin
		{"2300-01-01T00:00:00Z", "", false}, // after they end
		{"", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			ns, frac, ok := parseTimestamp([]byte(tc.in))
			if tc.want == "" {
				require.False(t, ok)
				return
			}
			require.True(t, ok)
			require.Equal(t, mustTime(t, tc.want).UnixNano(), ns)
			require.Equal(t, tc.frac, frac)
		})
	}
}

// parseTimestamp agrees with time.Parse on RFC 3339 over the int64 range.
func TestParseTimestampAgreesWithTimeParse(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	lo, hi := time.Date(1678, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(2261, 12, 31, 0, 0, 0, 0, time.UTC).Unix()
	for range 20000 {
		ts := time.Unix(lo+rng.Int64N(hi-lo), rng.Int64N(1e9)).In(time.FixedZone("", (rng.IntN(48)-24)*1800))
		s := ts.Format(time.RFC3339Nano)
		ns, _, ok := parseTimestamp([]byte(s))
		require.True(t, ok, s)
		require.Equal(t, ts.UnixNano(), ns, s)
	}
}
