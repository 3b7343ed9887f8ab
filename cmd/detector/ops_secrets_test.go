package main

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/crypto/bcrypt"

	"github.com/wikimedia/pretrain-detector/ingest/kafkatest"
)

// opsBrokerTLS returns a server certificate for 127.0.0.1, signed by a
// throwaway CA written to dir, and a client config that trusts that CA.
func opsBrokerTLS(t *testing.T, dir string) (server *tls.Config, client *tls.Config, caFile string) {
	t.Helper()
	ca := kafkatest.NewCA(t, dir, "kafka")
	return &tls.Config{Certificates: []tls.Certificate{ca.Server}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}, ca.File
}

// TestOpsNoSecretLeaks runs the daemon against a broker that requires TLS
// and SASL/SCRAM-SHA-512 (password from a file), with basic auth on its web
// endpoints, at debug level, through a broker outage (reconnects log
// their errors) and a failed reload, and checks that neither the Kafka
// password nor the web password nor its hash appears in the logs,
// /api/v1/status, /metrics or /api/v1/findings. The same daemon with a wrong
// password fails at start with an error that says why and does not echo it.
func TestOpsNoSecretLeaks(t *testing.T) {
	const (
		kafkaUser = "detector"
		kafkaPass = "kafka-pw-Zq8xV3nT"
		webUser   = "prometheus"
		webPass   = "web-pw-Lm4cR7yP"
	)
	dir := t.TempDir()
	serverTLS, clientTLS, caFile := opsBrokerTLS(t, dir)
	k := opsStartKafka(t, 1, opsTopics, kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", kafkaUser, kafkaPass))
	mech, err := scram.Mechanism(scram.SHA512, kafkaUser, kafkaPass)
	require.NoError(t, err)
	k.ClientTLS, k.ClientSASL = clientTLS, mech
	f := opsStartFeeder(t, k, opsFeed{Scenario: "quiet", Seed: 7, Past: 5 * time.Minute, Live: 5 * time.Minute, Rate: 20})
	<-f.Caught()

	hash, err := bcrypt.GenerateFromPassword([]byte(webPass), bcrypt.MinCost)
	require.NoError(t, err)
	webCfg := opsWriteFile(t, dir, "web.yml", "basic_auth_users:\n  "+webUser+": "+string(hash)+"\n")
	passFile := opsWriteFile(t, dir, "kafka-password", kafkaPass+"\n")
	security := "    tls: {enabled: true, ca_file: " + caFile + "}\n" +
		"    sasl: {mechanism: SCRAM-SHA-512, username: " + kafkaUser + ", password_file: " + passFile + "}\n"
	good := opsConfig{Brokers: k.Addr(), ClusterExtra: security}.YAML()
	cfg := opsWriteFile(t, dir, "detector.yml", good)

	d := opsStartDaemon(t, opsDaemonOptions{ConfigFile: cfg, WebConfigFile: webCfg, LogLevel: "debug", User: webUser, Pass: webPass})
	h := d.HTTP()
	h.WaitReady(t, 30*time.Second)
	_, written := f.Written()
	require.Eventually(t, func() bool { return h.Metrics(t).Sum("detector_ingest_records_total") >= float64(written) }, 20*time.Second, 50*time.Millisecond,
		"read through TLS and SCRAM-SHA-512")

	// Exercise the paths that log errors: a broker outage (reconnects,
	// discovery) and a rejected reload.
	k.ln.Down()
	time.Sleep(1500 * time.Millisecond)
	require.NoError(t, k.ln.Up())
	before := h.Metrics(t).Sum("detector_ingest_records_total")
	require.Eventually(t, func() bool { return h.Metrics(t).Sum("detector_ingest_records_total") > before }, 30*time.Second, 50*time.Millisecond,
		"re-authenticated after the outage")
	opsWriteFile(t, dir, "detector.yml", good+"detect:\n  alpha: 2\n")
	code, body, err := h.Do(http.MethodPost, "/-/reload", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusInternalServerError, code, body)

	t.Run("write endpoints refuse GET", func(t *testing.T) {
		for _, path := range []string{"/-/reload", "/api/v1/deploys"} {
			code, _ := h.Get(t, path)
			want := http.StatusMethodNotAllowed
			if path == "/api/v1/deploys" {
				want = http.StatusOK // GET lists the deploys' verdicts; POST adds a marker
			}
			require.Equal(t, want, code, path)
			anon := opsHTTP{URL: h.URL, Client: h.Client}
			code, _, err := anon.Do(http.MethodPost, path, "{}")
			require.NoError(t, err)
			require.Equal(t, http.StatusUnauthorized, code, "POST %s without credentials", path)
		}
	})

	_, status := h.Get(t, "/api/v1/status")
	require.Contains(t, status, `"sasl_mechanism":"SCRAM-SHA-512"`)
	require.Contains(t, status, `"tls":true`)
	_, metrics := h.Get(t, "/metrics")
	_, findings := h.Get(t, "/api/v1/findings")
	_, stop := d.Stop()
	require.NoError(t, stop)
	logs := d.Logs.String() + d.Stdout.String()
	require.Contains(t, logs, "Partition read interrupted; reconnecting", "the outage was logged")
	require.Contains(t, logs, "Configuration reload failed", "the reload was logged")

	secrets := map[string]string{
		"Kafka password": kafkaPass, "web password": webPass, "web password hash": string(hash),
		"basic-auth header": base64.StdEncoding.EncodeToString([]byte(webUser + ":" + webPass)),
	}
	for where, text := range map[string]string{"logs": logs, "/api/v1/status": status, "/metrics": metrics, "/api/v1/findings": findings} {
		for what, secret := range secrets {
			require.NotContains(t, text, secret, "%s in %s", what, where)
		}
	}

	t.Run("a wrong password fails the start, saying why", func(t *testing.T) {
		opsWriteFile(t, dir, "kafka-password", "wrong-pw-Hk2sW9\n")
		opsWriteFile(t, dir, "detector.yml", good)
		var out, errOut bytes.Buffer
		code := realMain([]string{"--config.file=" + filepath.Join(dir, "detector.yml"), "--log.level=debug", "run",
			"--web.listen-address=127.0.0.1:0", "--web.config.file=" + webCfg}, &out, &errOut)
		require.Equal(t, 1, code)
		require.Contains(t, errOut.String(), "SASL Authentication Failed")
		for _, s := range []string{"wrong-pw-Hk2sW9", kafkaPass, string(hash)} {
			require.NotContains(t, errOut.String()+out.String(), s)
		}
	})
}
