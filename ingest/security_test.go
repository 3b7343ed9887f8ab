package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/ingest/kafkatest"

	"github.com/wikimedia/pretrain-detector/wikimap"
)

// testCA is a throwaway certificate authority and a server certificate it
// signed for 127.0.0.1.
type testCA struct {
	caFile string
	server tls.Certificate
}

func newTestCA(t *testing.T, dir, name string) testCA {
	t.Helper()
	ca := kafkatest.NewCA(t, dir, name)
	return testCA{caFile: ca.File, server: ca.Server}
}

// The broker's users, one per mechanism.
var secureUsers = map[string][2]string{
	"PLAIN":         {"plain-user", "plain-pass-8d1f"},
	"SCRAM-SHA-256": {"scram256-user", "scram256-pass-3b7e"},
	"SCRAM-SHA-512": {"scram512-user", "scram512-pass-c0a9"},
}

// startSecureKafka starts a broker that speaks only TLS and requires SASL,
// with one topic holding n access-log records, written through the same
// security.
func startSecureKafka(t *testing.T, ca testCA, topic string, recs [][]byte) *kfake.Cluster {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(2, topic), kfake.EnableSASL(),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.server}, MinVersion: tls.VersionTLS12})}
	for mech, up := range secureUsers {
		opts = append(opts, kfake.Superuser(mech, up[0], up[1]))
	}
	c, err := kfake.NewCluster(opts...)
	require.NoError(t, err)
	t.Cleanup(c.Close)

	clientTLS, err := TLSConfig(TLSOptions{Enabled: true, CAFile: ca.caFile})
	require.NoError(t, err)
	up := secureUsers["SCRAM-SHA-512"]
	mech, err := SASLMechanism("SCRAM-SHA-512", up[0], writePassword(t, up[1]))
	require.NoError(t, err)
	tr := &kafka.Transport{TLS: clientTLS, SASL: mech}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(c.ListenAddrs()...), Topic: topic, Transport: tr, RequiredAcks: kafka.RequireOne, BatchTimeout: time.Millisecond}
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = kafka.Message{Value: r, Time: recordTime(t, r)}
	}
	require.NoError(t, w.WriteMessages(context.Background(), msgs...))
	require.NoError(t, w.Close())
	return c
}

func writePassword(t *testing.T, pass string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "password")
	require.NoError(t, os.WriteFile(p, []byte(pass+"\n"), 0o600)) // a trailing newline, as editors leave
	return p
}

// secureConsumer reads every partition of topic through a dialer built by
// NewDialer, from the oldest record, and counts the events.
func secureConsumer(t *testing.T, brokers []string, topic string, d *kafka.Dialer) (*Consumer, *sync.Mutex, *[]event.Event) {
	t.Helper()
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	var mu sync.Mutex
	var events []event.Event
	flushes := 0
	c, err := NewConsumer(ConsumerOptions{
		Sources: []Source{{Cluster: "secure", Brokers: brokers, Dialer: d, Topic: topic, Format: decode.FormatAccessLog}},
		NewSink: func() Sink { return collect{mu: &mu, events: &events, flush: &flushes} },
		MaxWait: 100 * time.Millisecond,
		NewDecoder: func(f decode.Format) (*decode.Decoder, error) {
			return decode.New(f, wikis, event.NewInterner(), event.NewInterner(), decode.Options{MaxSkew: -1})
		},
		MissingTopicIsError: true,
	}, slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	return c, &mu, &events
}

// TestKafkaTLSAndSASL reads through TLS with each SASL mechanism the
// configuration offers, end to end: config-shaped options → TLSConfig,
// SASLMechanism (password from a file) → NewDialer → Consumer → a broker
// that accepts nothing else. Wrong credentials, an untrusted certificate
// and plaintext fail with errors that say so, and never carry the password.
func TestKafkaTLSAndSASL(t *testing.T) {
	const topic = "mediawiki.httpd.accesslog"
	dir := t.TempDir()
	ca := newTestCA(t, dir, "kafka")
	recs := readLines(t, "accesslog.jsonl")
	require.NotEmpty(t, recs)
	c := startSecureKafka(t, ca, topic, recs)
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	want := 0
	for _, r := range recs {
		if decodeOK(t, wikis, decode.FormatAccessLog, r) {
			want++
		}
	}
	require.Positive(t, want)

	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			tc, err := TLSConfig(TLSOptions{Enabled: true, CAFile: ca.caFile})
			require.NoError(t, err)
			up := secureUsers[mech]
			m, err := SASLMechanism(mech, up[0], writePassword(t, up[1]))
			require.NoError(t, err)
			cons, mu, events := secureConsumer(t, c.ListenAddrs(), topic, NewDialer("detector-test", tc, m))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- cons.Run(ctx) }()
			require.Eventually(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(*events) == want && cons.CaughtUp()
			}, 20*time.Second, 20*time.Millisecond, "every record through TLS and %s", mech)
			cancel()
			require.NoError(t, <-done)
		})
	}

	failures := []struct {
		name     string
		tls      TLSOptions
		mech     string
		user     string
		password string
		want     []string // substrings of the error
	}{
		{name: "wrong password", tls: TLSOptions{Enabled: true, CAFile: ca.caFile}, mech: "SCRAM-SHA-512",
			user: secureUsers["SCRAM-SHA-512"][0], password: "not-the-password-77", want: []string{"broker refused the connection", "SASL Authentication Failed"}},
		{name: "unknown user", tls: TLSOptions{Enabled: true, CAFile: ca.caFile}, mech: "PLAIN",
			user: "nobody", password: "not-the-password-77", want: []string{"broker refused the connection", "SASL Authentication Failed"}},
		{name: "untrusted certificate", tls: TLSOptions{Enabled: true, CAFile: newTestCA(t, dir, "other").caFile}, mech: "SCRAM-SHA-512",
			user: secureUsers["SCRAM-SHA-512"][0], password: secureUsers["SCRAM-SHA-512"][1], want: []string{"broker refused the connection", "certificate signed by unknown authority"}},
		{name: "no TLS to a TLS broker", mech: "SCRAM-SHA-512",
			user: secureUsers["SCRAM-SHA-512"][0], password: secureUsers["SCRAM-SHA-512"][1], want: []string{"no broker reachable", c.ListenAddrs()[0]}},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			tlsCfg, err := TLSConfig(tc.tls)
			require.NoError(t, err)
			m, err := SASLMechanism(tc.mech, tc.user, writePassword(t, tc.password))
			require.NoError(t, err)
			d := NewDialer("detector-test", tlsCfg, m)
			d.Timeout = 3 * time.Second
			cons, _, _ := secureConsumer(t, c.ListenAddrs(), topic, d)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_, err = cons.Discover(ctx)
			require.Error(t, err)
			for _, s := range tc.want {
				require.ErrorContains(t, err, s)
			}
			// A broker that answered is not called unreachable, and one
			// that refused us is not: the operator's fix differs.
			require.Equal(t, strings.Contains(tc.want[0], "refused"), errors.Is(err, ErrRefused), "%v", err)
			require.Equal(t, !errors.Is(err, ErrRefused), errors.Is(err, ErrNoBroker), "%v", err)
			t.Logf("%s: %v", tc.name, err)
			require.NotContains(t, err.Error(), tc.password)
			require.NotContains(t, err.Error(), secureUsers["SCRAM-SHA-512"][1])
		})
	}
}

// TestSecurityOptionErrors: the settings fail at start, naming the setting
// and never echoing a password.
func TestSecurityOptionErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hunter2-is-not-a-certificate"), 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	secret := writePassword(t, "hunter2-secret")

	t.Run("tls", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			o    TLSOptions
			want string
		}{
			{"missing CA file", TLSOptions{Enabled: true, CAFile: filepath.Join(dir, "nope.pem")}, "read tls.ca_file"},
			{"CA file without PEM", TLSOptions{Enabled: true, CAFile: notPEM}, "no PEM certificate found"},
			{"missing client certificate", TLSOptions{Enabled: true, CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem")}, "tls.cert_file/tls.key_file"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := TLSConfig(tc.o)
				require.ErrorContains(t, err, tc.want)
				require.NotContains(t, err.Error(), "hunter2")
			})
		}
		c, err := TLSConfig(TLSOptions{})
		require.NoError(t, err)
		require.Nil(t, c, "TLS off")
	})
	t.Run("sasl", func(t *testing.T) {
		for _, tc := range []struct {
			name, mech, file, want string
		}{
			{"missing password file", "SCRAM-SHA-512", filepath.Join(dir, "nope"), "read sasl.password_file"},
			{"empty password file", "PLAIN", empty, "sasl.password_file is empty"},
			{"unknown mechanism", "GSSAPI", secret, `sasl.mechanism "GSSAPI" is not supported`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := SASLMechanism(tc.mech, "u", tc.file)
				require.ErrorContains(t, err, tc.want)
				require.NotContains(t, err.Error(), "hunter2")
			})
		}
		m, err := SASLMechanism("", "u", "")
		require.NoError(t, err)
		require.Nil(t, m, "SASL off")
		m, err = SASLMechanism("SCRAM-SHA-512", "u", secret)
		require.NoError(t, err)
		var _ sasl.Mechanism = m
		require.Equal(t, "SCRAM-SHA-512", m.Name())
	})
}
