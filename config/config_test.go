package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

func TestDefaultIsValidAndDescribesWikimedia(t *testing.T) {
	c := Default()
	require.NoError(t, c.Validate())
	var topics []string
	for _, ct := range c.Topics() {
		topics = append(topics, ct.Topic.Name+"="+ct.Topic.Format)
	}
	require.Equal(t, []string{"k8s-mw-eqiad=mediawiki-log", "k8s-mw-codfw=mediawiki-log", "mediawiki.httpd.accesslog=httpd-accesslog"}, topics)
	require.Equal(t, []string{"testwiki"}, c.Pretrain.Cohort)
	require.Equal(t, "kube-mw-pretrain", c.Pretrain.ServergroupPrefix)
	require.Equal(t, "mw-pretrain", c.Pretrain.Deployment)
	require.Equal(t, 10*time.Second, time.Duration(c.Window.Bucket))
	require.Equal(t, 2*time.Hour, time.Duration(c.Window.Length))
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		err        string // substring; "" = valid
		check      func(*testing.T, Config)
	}{
		{name: "empty file is all defaults", yaml: "", check: func(t *testing.T, c Config) { require.Equal(t, Default(), c) }},
		{name: "override keeps other defaults", yaml: "window:\n  bucket: 20s\n", check: func(t *testing.T, c Config) {
			require.Equal(t, 20*time.Second, time.Duration(c.Window.Bucket))
			require.Equal(t, 2*time.Hour, time.Duration(c.Window.Length))
		}},
		{name: "unknown top-level key", yaml: "windw:\n  bucket: 10s\n", err: `unknown field "windw" in the top level`},
		{name: "unknown nested key", yaml: "window:\n  buckets: 10s\n", err: `unknown field "buckets" in window`},
		{name: "unknown key in a cluster", yaml: "kafka:\n  clusters:\n  - name: a\n    broker: [x:1]\n", err: `unknown field "broker" in kafka.clusters[]`},
		{name: "bad duration", yaml: "window:\n  bucket: ten seconds\n", err: "ten seconds"},
		{name: "bad type", yaml: "detect:\n  alpha: lots\n", err: "lots"},
		{name: "length not a multiple of bucket", yaml: "window:\n  bucket: 7s\n", err: "field window.length"},
		{name: "more buckets than the window holds", yaml: "window:\n  bucket: 1ms\n  length: 24h\n", err: "field window.length: must be at most 1048576 buckets of window.bucket, not 86400000"},
		{name: "alpha out of range", yaml: "detect:\n  alpha: 0.9\n", err: "field detect.alpha"},
		{name: "unknown format", yaml: "kafka:\n  clusters:\n  - name: a\n    brokers: [h:9092]\n    topics: [{name: t, format: csv}]\n", err: "field kafka.clusters[0].topics[0].format"},
		{name: "broker without port", yaml: "kafka:\n  clusters:\n  - name: a\n    brokers: [kafka1]\n    topics: [{name: t, format: webrequest}]\n", err: "field kafka.clusters[0].brokers[0]"},
		{name: "sasl without password file", yaml: "kafka:\n  clusters:\n  - name: a\n    brokers: [h:1]\n    sasl: {mechanism: SCRAM-SHA-512, username: u}\n    topics: [{name: t, format: webrequest}]\n", err: "field kafka.clusters[0].sasl"},
		{name: "unknown sasl mechanism", yaml: "kafka:\n  clusters:\n  - name: a\n    brokers: [h:1]\n    sasl: {mechanism: GSSAPI}\n    topics: [{name: t, format: webrequest}]\n", err: "field kafka.clusters[0].sasl.mechanism"},
		{name: "max partition stall", yaml: "kafka:\n  max_partition_stall: 0s\n", err: "field kafka.max_partition_stall"},
		{name: "topic recheck", yaml: "kafka:\n  topic_recheck: 0s\n", err: "field kafka.topic_recheck"},
		{name: "max partition stall default", yaml: "", check: func(t *testing.T, c Config) {
			require.Equal(t, 2*time.Minute, time.Duration(c.Kafka.MaxPartitionStall))
		}},
		{name: "empty cohort", yaml: "pretrain:\n  cohort: []\n", err: "field pretrain.cohort"},
		{name: "deploy marker scope", yaml: "deploys:\n- {scope: canary, version: x, at: 2026-11-24T10:00:00Z}\n", err: "field deploys[0].scope"},
		{name: "deploy marker ok", yaml: "deploys:\n- {scope: pretrain, version: 1.47.0-alpha, at: 2026-11-24T10:00:00Z}\n", check: func(t *testing.T, c Config) {
			require.Len(t, c.Deploys, 1)
			require.Equal(t, time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC), c.Deploys[0].At.UTC())
		}},
		{name: "deploy marker in year 1600", yaml: "deploys:\n- {scope: train, version: x, at: 1600-01-01T00:00:00Z}\n", err: "field deploys[0].at"},
		{name: "deploy marker without version", yaml: "deploys:\n- {scope: train, at: 2026-11-24T10:00:00Z}\n", err: "field deploys[0].version"},
		{name: "sasl plain without tls", yaml: "kafka:\n  clusters:\n  - name: a\n    brokers: [h:1]\n    sasl: {mechanism: PLAIN, username: u, password_file: p}\n    topics: [{name: t, format: webrequest}]\n", err: "field kafka.clusters[0].sasl.mechanism: PLAIN without tls.enabled"},
		{name: "sasl plain without tls, allowed", yaml: "kafka:\n  clusters:\n  - name: a\n    brokers: [h:1]\n    sasl: {mechanism: PLAIN, username: u, password_file: p, allow_plaintext: true}\n    topics: [{name: t, format: webrequest}]\n"},
		{name: "sasl plain with tls", yaml: "kafka:\n  clusters:\n  - name: a\n    brokers: [h:1]\n    tls: {enabled: true}\n    sasl: {mechanism: PLAIN, username: u, password_file: p}\n    topics: [{name: t, format: webrequest}]\n"},
		{name: "marker topic default", yaml: "", check: func(t *testing.T, c Config) {
			require.Equal(t, "pretrain-detector.deploy-markers", c.DeployMarkers.Topic)
			require.Equal(t, "logging-eqiad", c.MarkerCluster().Name)
		}},
		{name: "marker topic off", yaml: "deploy_markers: {topic: ''}\n", check: func(t *testing.T, c Config) { require.Nil(t, c.MarkerCluster()) }},
		{name: "marker topic on an unknown cluster", yaml: "deploy_markers: {cluster: nowhere}\n", err: "field deploy_markers.cluster"},
		{name: "marker topic is a log topic", yaml: "deploy_markers: {topic: k8s-mw-eqiad}\n", err: "field deploy_markers.topic"},
		{name: "alertmanager set", yaml: "alerting:\n  alertmanagers:\n  - urls: [https://am1:9093, https://am2:9093/prefix]\n    timeout: 3s\n    basic_auth: {username: detector, password_file: am-pass}\n    tls_config: {ca_file: ca.pem}\n", check: func(t *testing.T, c Config) {
			require.Len(t, c.Alerting.Alertmanagers, 1)
			am := c.Alerting.Alertmanagers[0]
			require.Equal(t, []string{"https://am1:9093", "https://am2:9093/prefix"}, am.URLs)
			require.Equal(t, 3*time.Second, time.Duration(am.Timeout))
			require.Equal(t, "am-pass", am.HTTPClientConfig.BasicAuth.PasswordFile)
			require.True(t, am.HTTPClientConfig.FollowRedirects, "prometheus/common's defaults apply")
		}},
		{name: "alertmanager set default timeout", yaml: "alerting:\n  alertmanagers:\n  - urls: [http://am:9093]\n    bearer_token_file: token\n", check: func(t *testing.T, c Config) {
			am := c.Alerting.Alertmanagers[0]
			require.Equal(t, 10*time.Second, time.Duration(am.Timeout))
			require.Equal(t, "token", am.HTTPClientConfig.Authorization.CredentialsFile, "bearer_token_file becomes authorization, as in Prometheus")
		}},
		{name: "alertmanager set unknown key", yaml: "alerting:\n  alertmanagers:\n  - urls: [http://am:9093]\n    basic_auth: {username: u, pasword_file: p}\n", err: "pasword_file"},
		{name: "alertmanager set unknown top key", yaml: "alerting:\n  alertmanagers:\n  - url: http://am:9093\n", err: `unknown field "url" in alerting.alertmanagers[]`},
		{name: "alertmanager URL with a password", yaml: "alerting:\n  alertmanagers:\n  - urls: [http://u:hunter2@am:9093]\n", err: "field alerting.alertmanagers[0].urls[0]"},
		{name: "alertmanager two auths", yaml: "alerting:\n  alertmanagers:\n  - urls: [http://am:9093]\n    basic_auth: {username: u, password_file: p}\n    bearer_token_file: t\n", err: "field alerting.alertmanagers[0]: at most one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestLoadResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "detector.yml")
	require.NoError(t, os.WriteFile(p, []byte("kafka:\n  clusters:\n  - name: a\n    brokers: [h:9093]\n    tls: {enabled: true, ca_file: ca.pem}\n    topics: [{name: t, format: mediawiki-log}]\n"), 0o600))
	c, err := Load(p)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "ca.pem"), c.Kafka.Clusters[0].TLS.CAFile)

	require.NoError(t, os.WriteFile(p, []byte("alerting:\n  alertmanagers:\n  - urls: [https://am:9093]\n    basic_auth: {username: u, password_file: am-pass}\n    tls_config: {ca_file: am-ca.pem}\n"), 0o600))
	c, err = Load(p)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "am-pass"), c.Alerting.Alertmanagers[0].HTTPClientConfig.BasicAuth.PasswordFile)
	require.Equal(t, filepath.Join(dir, "am-ca.pem"), c.Alerting.Alertmanagers[0].HTTPClientConfig.TLSConfig.CAFile)

	_, err = Load(filepath.Join(dir, "missing.yml"))
	require.ErrorContains(t, err, "missing.yml")
}

func TestOverrideBrokers(t *testing.T) {
	c := Default()
	c.OverrideBrokers([]string{"127.0.0.1:9092"})
	require.Equal(t, []string{"127.0.0.1:9092"}, c.Kafka.Clusters[0].Brokers)
	c.OverrideBrokers(nil)
	require.Equal(t, []string{"127.0.0.1:9092"}, c.Kafka.Clusters[0].Brokers)
}

func TestValidateNamesEveryBadFieldInOrder(t *testing.T) {
	c := Default()
	c.Kafka.Clusters[0].Brokers = []string{"kafka1"}
	c.DeployMarkers.MaxAhead = model.Duration(2 * time.Hour)
	c.Kafka.MaxWait = 0
	c.Pretrain.Cohort = nil
	c.Window.CacheBytes = 0
	c.Detect.Alpha = 1
	c.Alerting.ResendDelay = 0
	c.Deploys = []DeployMarker{{Scope: "train", Version: "x"}}
	c.Classifier.Paths = []PathRule{{Class: "x"}}
	err := c.Validate()
	require.Error(t, err)
	var fields []string
	for _, line := range strings.Split(err.Error(), "\n") {
		fields = append(fields, strings.SplitN(strings.TrimPrefix(line, "field "), ":", 2)[0])
	}
	require.Equal(t, []string{
		"kafka.clusters[0].brokers[0]", "deploy_markers.max_ahead", "kafka.max_wait",
		"pretrain.cohort", "window.cache_bytes", "detect.alpha", "alerting.resend_delay", "deploys[0].at",
		"classifier.paths[0].contains",
	}, fields)
}
