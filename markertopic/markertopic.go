// Package markertopic keeps deploy markers in a Kafka topic, the
// detector's only state, so every replica and every restart agrees on them.
// The deploys API produces a marker to the topic (Writer); every replica
// reads the topic from now − window length at start, then follows it, and
// adds each marker to its deploy timeline (Reader). A marker posted to one
// replica behind a Service thus reaches all of them, and survives restarts
// for as long as the topic retains it (which should be at least the window
// length).
//
// The topic is created by whoever runs Kafka (one partition is plenty: a few
// markers a day); the detector does not create topics. While it is missing
// (or not authorized) the reader logs a warning, counts as caught up, and
// looks again every Recheck.
//
// A record's value is one JSON object, {"scope", "group", "version", "at",
// "by"}; the key is scope/group/version. Records are checked on read as on
// write (window.NewMarker's bounds), and their "at" must lie within
// [record time − MaxAge, record time + MaxAhead], so a record written by
// anything else than the API cannot slip a marker dated far ahead into the
// timeline. Bad records are counted by reason and skipped.
package markertopic

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/window"
)

// Source is the Deploy.Source of markers read from the topic.
const Source = "api"

const (
	maxRecordBytes = 4 << 10
	minBackoff     = 200 * time.Millisecond
	maxBackoff     = 10 * time.Second
	writeTimeout   = 10 * time.Second
)

// Marker is one record of the topic.
type Marker struct {
	Scope   string    `json:"scope"`
	Group   string    `json:"group,omitempty"`
	Version string    `json:"version"`
	At      time.Time `json:"at"`
	// By is who posted it (basic-auth user and remote address).
	By string `json:"by,omitempty"`
}

// Options configure a Reader and a Writer.
type Options struct {
	Brokers  []string
	Topic    string
	ClientID string
	TLS      *tls.Config
	SASL     sasl.Mechanism
	// Since is where reading starts, by record timestamp: now − window
	// length in the daemon.
	Since time.Time
	// MaxAge and MaxAhead bound a marker's "at" around its record's
	// timestamp (window length and deploy_markers.max_ahead).
	MaxAge, MaxAhead time.Duration
	// MaxWait bounds a fetch's long poll (small, so shutdown is quick).
	MaxWait time.Duration
	// Recheck is how often a missing topic and new partitions are looked
	// for.
	Recheck time.Duration
	// Apply adds a checked marker to the deploy timeline.
	Apply    func(window.Deploy) error
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

func (o *Options) defaults() error {
	if len(o.Brokers) == 0 {
		return errors.New("marker topic: no brokers")
	}
	if o.Topic == "" {
		return errors.New("marker topic: no topic")
	}
	if o.ClientID == "" {
		o.ClientID = "pretrain-detector"
	}
	if o.MaxWait <= 0 {
		o.MaxWait = ingest.DefaultMaxWait
	}
	if o.Recheck <= 0 {
		o.Recheck = ingest.DefaultTopicRecheck
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (o *Options) transport() *kafka.Transport {
	return &kafka.Transport{ClientID: o.ClientID, TLS: o.TLS, SASL: o.SASL, DialTimeout: 10 * time.Second}
}
