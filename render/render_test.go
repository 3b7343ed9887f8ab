package render

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNiceScale(t *testing.T) {
	for _, tc := range []struct {
		top     float64
		wantMax float64
	}{
		{0, 1.5}, {0.37, 0.6}, {1, 1.5}, {3, 4}, {9.6, 15}, {1000, 1500}, {0.0042, 0.006},
	} {
		t.Run(fmt.Sprint(tc.top), func(t *testing.T) {
			m, ticks := niceScale(tc.top)
			require.InDelta(t, tc.wantMax, m, 1e-9)
			require.GreaterOrEqual(t, m, tc.top*1.1-1e-9)
			require.Zero(t, ticks[0])
			require.Equal(t, m, ticks[len(ticks)-1])
			require.GreaterOrEqual(t, len(ticks), 4)
			require.LessOrEqual(t, len(ticks), 7)
		})
	}
}
