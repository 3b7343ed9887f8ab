package amtest

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestConfigYAML(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want map[string]any
	}{
		{
			name: "defaults as Start sets them",
			o:    Options{WebhookURL: "http://127.0.0.1:1234/alerts", GroupInterval: time.Second, RepeatInterval: time.Hour, GroupBy: []string{"..."}},
			want: map[string]any{
				"route": map[string]any{"receiver": "hook", "group_by": []any{"..."}, "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h0m0s"},
				"receivers": []any{map[string]any{"name": "hook", "webhook_configs": []any{
					map[string]any{"url": "http://127.0.0.1:1234/alerts", "send_resolved": true},
				}}},
			},
		},
		{
			name: "quoting survives odd characters",
			o:    Options{WebhookURL: "http://h/a: b#c", GroupWait: time.Second, GroupInterval: 2 * time.Second, RepeatInterval: time.Minute, GroupBy: []string{"alertname", "finding_id"}},
			want: map[string]any{
				"route": map[string]any{"receiver": "hook", "group_by": []any{"alertname", "finding_id"}, "group_wait": "1s", "group_interval": "2s", "repeat_interval": "1m0s"},
				"receivers": []any{map[string]any{"name": "hook", "webhook_configs": []any{
					map[string]any{"url": "http://h/a: b#c", "send_resolved": true},
				}}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(configYAML(tc.o)), &got))
			require.Equal(t, tc.want, got)
		})
	}
}

// TestStartPostNotify checks the helper itself against the real binary: an
// alert posted straight to the API reaches the webhook.
func TestStartPostNotify(t *testing.T) {
	hook := NewWebhook(t)
	am := Start(t, Options{WebhookURL: hook.URL})

	body := []byte(`[{"labels":{"alertname":"AmtestSmoke","finding_id":"x1"},"annotations":{"summary":"<b>hi</b>"}}]`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, am.URL+"/api/v2/alerts", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)

	a := hook.WaitFor(t, 15*time.Second, func(a Alert) bool { return a.Labels["alertname"] == "AmtestSmoke" })
	require.Equal(t, "firing", a.Status)
	require.Equal(t, "<b>hi</b>", a.Annotations["summary"])
	msgs := hook.Messages()
	require.NotEmpty(t, msgs)
	require.Equal(t, "hook", msgs[0].Receiver)
	require.Equal(t, "4", msgs[0].Version)

	am.Stop()
	am.Stop() // idempotent
	_, err = client.Get(am.URL + "/-/ready")
	require.Error(t, err, "stopped")
}
