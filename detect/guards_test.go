package detect

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGuardNotes pins each guard's text: the evidence's notes are a
// contract (alerts and reports show them), and the rules once wrote them
// by hand.
func TestGuardNotes(t *testing.T) {
	for _, tc := range []struct {
		g    guard
		want string
	}{
		{guard{kind: guardNoPrePeriod}, "insufficient evidence: too little data before the deploy to call this fingerprint new"},
		{guard{kind: guardBurstDistinct, distinct: 1, need: 3}, "burst guard: 1 distinct requests of the 3 needed"},
		{guard{kind: guardBurstBuckets, buckets: 2, need: 3}, "burst guard: seen in 2 of the 3 buckets needed"},
		{guard{kind: guardBurstBuckets, errors: true, buckets: 2, need: 3}, "burst guard: errors in 2 of the 3 buckets needed"},
		{guard{kind: guardBurst, distinct: 2, buckets: 5}, "burst guard: 2 distinct requests in 5 buckets"},
		{guard{kind: guardFleet}, "a fleet-wide incident is under way: not blaming Pretrain while it lasts"},
		{guard{kind: guardFleet, beyond: true}, "a fleet-wide incident is under way beyond this fingerprint: not blaming Pretrain"},
		{guard{kind: guardEvidence, test: "code test", p: 0.0123, level: 1e-3}, "insufficient evidence: code test p=0.012 above 0.001"},
		{guard{kind: guardEvidence, p: 0.5, level: 1e-3}, "insufficient evidence: p=0.5 above 0.001"},
		{guard{kind: guardEvidence, test: "onset", p: 0, level: 5e-4}, "insufficient evidence: onset p=<1e-300 above 0.0005"},
		{guard{kind: guardEValue, e: 123.456, threshold: 1000}, "insufficient evidence: e-value 123 of the 1e+03 needed"},
		{guard{kind: guardNotConcentrated, where: "the cohort's DB section", in: 3, of: 10, p: 0.25}, "not concentrated on the cohort's DB section (3 of 10 errors there; p=0.25): a fleet-wide cause could explain it"},
		{guard{kind: guardUndecided, reason: "undetermined: why"}, "undetermined: why"},
	} {
		require.Equal(t, tc.want, tc.g.String())
	}
	held := guards{{kind: guardNoPrePeriod}, {kind: guardUndecided, reason: "both"}}
	require.True(t, held.blocks())
	require.False(t, held.only(guardUndecided))
	require.True(t, held[1:].only(guardUndecided))
	require.False(t, guards(nil).only(guardUndecided), "nothing held: not undecided")
	require.False(t, guards(nil).blocks())
	require.Equal(t, "reached via x; insufficient evidence: too little data before the deploy to call this fingerprint new; both", held.note("reached via x"))
	require.Equal(t, "", guards(nil).note())
	require.Equal(t, "reached via x", guards(nil).note("reached via x"))
	require.Equal(t, "insufficient evidence: too little data before the deploy to call this fingerprint new", held.first())
	require.Equal(t, "", guards(nil).first())
}
