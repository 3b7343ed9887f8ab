package detect

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestKindFacts: every kind has its facts, alert names are unique, and
// exactly the three kinds that speak of Pretrain's code blame it.
func TestKindFacts(t *testing.T) {
	names := map[string]Kind{}
	var blaming []Kind
	for _, k := range Kinds {
		f, ok := k.Facts()
		require.True(t, ok, k)
		require.Contains(t, []string{"critical", "warning", "info"}, f.Severity, k)
		require.NotEmpty(t, f.AlertName, k)
		require.NotContains(t, names, f.AlertName, "alertname of %s and %s", k, names[f.AlertName])
		names[f.AlertName] = k
		if f.BlamesPretrain {
			blaming = append(blaming, k)
			require.Equal(t, "pretrain", f.Cohort, k)
		}
	}
	require.Equal(t, []Kind{KindPretrainRegression, KindSharedDataSpillover, KindPretrainLeak}, blaming)
	require.Len(t, kindFacts, len(Kinds), "a fact table entry for a kind not in Kinds")
	_, ok := Kind("future-kind").Facts()
	require.False(t, ok)
	require.Equal(t, "warning", Kind("future-kind").Severity())
	require.False(t, Kind("future-kind").BlamesPretrain())
}
