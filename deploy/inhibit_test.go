package deploy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/alert/amtest"
)

// TestInhibitionOnlyBetweenLiveAlerts runs a real Alertmanager with the
// example routing tree and posts alerts as the detector labels them: a live
// spillover inhibits the live Pretrain regression of the same fingerprint;
// a replayed spillover (replay="true", history) inhibits nothing, and a
// replayed regression is inhibited by nothing. (amtool's `config routes
// test` checks routes only, not inhibition; Alertmanager's own API reports
// what is inhibited.)
func TestInhibitionOnlyBetweenLiveAlerts(t *testing.T) {
	am := amtest.Start(t, amtest.Options{ConfigFile: routeFile})
	alert := func(labels ...string) map[string]any {
		ls := map[string]string{}
		for i := 0; i+1 < len(labels); i += 2 {
			ls[labels[i]] = labels[i+1]
		}
		return map[string]any{"labels": ls, "startsAt": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339),
			"endsAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}
	}
	spill, regr := "PretrainSharedDataSpillover", "PretrainRegression"
	// Alertmanager's inhibitor takes alerts in as they arrive, in order: the
	// live spillover goes last, so once it inhibits, the replayed one has
	// been taken in too.
	post := func(alerts ...map[string]any) {
		body, err := json.Marshal(alerts)
		require.NoError(t, err)
		resp, err := http.Post(am.URL+"/api/v2/alerts", "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	post(
		alert("alertname", spill, "severity", "critical", "finding_id", "replayed-spill", "fingerprint", "bb", "replay", "true"),
		alert("alertname", regr, "severity", "warning", "finding_id", "live-regr-bb", "fingerprint", "bb"),
		alert("alertname", regr, "severity", "warning", "finding_id", "live-regr-aa", "fingerprint", "aa"),
		alert("alertname", regr, "severity", "warning", "finding_id", "replayed-regr-aa", "fingerprint", "aa", "replay", "true"),
	)
	post(alert("alertname", spill, "severity", "critical", "finding_id", "live-spill", "fingerprint", "aa"))

	type status struct {
		State       string   `json:"state"`
		InhibitedBy []string `json:"inhibitedBy"`
	}
	var got map[string]status
	require.Eventually(t, func() bool {
		resp, err := http.Get(am.URL + "/api/v2/alerts")
		if err != nil {
			return false
		}
		defer func() { _ = resp.Body.Close() }()
		var as []struct {
			Labels map[string]string `json:"labels"`
			Status status            `json:"status"`
		}
		if json.NewDecoder(resp.Body).Decode(&as) != nil {
			return false
		}
		got = map[string]status{}
		for _, a := range as {
			got[a.Labels["finding_id"]] = a.Status
		}
		return len(got) == 5 && got["live-regr-aa"].State == "suppressed"
	}, 10*time.Second, 50*time.Millisecond, "the live spillover inhibits the live regression of its fingerprint: %v", got)

	require.Equal(t, "suppressed", got["live-regr-aa"].State, "a live spillover inhibits the live regression of its fingerprint")
	require.Len(t, got["live-regr-aa"].InhibitedBy, 1)
	for _, id := range []string{"live-spill", "replayed-regr-aa", "replayed-spill", "live-regr-bb"} {
		require.Equal(t, "active", got[id].State, "%s: not inhibited", id)
		require.Empty(t, got[id].InhibitedBy, id)
	}
}
