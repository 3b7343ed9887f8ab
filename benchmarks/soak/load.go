package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Topics the load writes: the production defaults, which the simulator and
// the detector's default configuration share.
const (
	topicAccessLog = simulate.DefaultAccessLog
	topicEqiad     = "k8s-mw-eqiad"
	topicCodfw     = "k8s-mw-codfw"
)

// LoadConfig is what the load process (broker and traffic) is told by the
// benchmark, as one JSON line on its stdin.
type LoadConfig struct {
	// Rate is the target of request events per wall second (the access
	// log); the simulator's fleet rate is calibrated to give it.
	Rate float64 `json:"rate"`
	// Duration of the traffic.
	Duration time.Duration `json:"duration"`
	// StormAt and StormFor place the cardinality storm in the run;
	// StormFingerprints new error fingerprints are written evenly over it.
	StormAt           time.Duration `json:"storm_at"`
	StormFor          time.Duration `json:"storm_for"`
	StormFingerprints int           `json:"storm_fingerprints"`
	// AccessLogPartitions of the access log; each error topic has 2.
	AccessLogPartitions int `json:"access_log_partitions"`
	// RetentionBytes per partition: the broker deletes older batches every
	// second, as a real one does by retention, so that it holds a few
	// seconds of traffic, not the whole run.
	RetentionBytes int64 `json:"retention_bytes"`
	// Compression of the produced batches: "snappy" (as Wikimedia's
	// logging producers), "lz4", "zstd" or "none".
	Compression string `json:"compression"`
	Seed        int64  `json:"seed"`
}

// loadMsg is one JSON line the load process writes on its stdout.
type loadMsg struct {
	Addr    string           `json:"addr,omitempty"`
	At      time.Time        `json:"at"`
	Written map[string]int64 `json:"written,omitempty"` // records acknowledged, by topic
	Storm   int64            `json:"storm"`             // storm records among them
	Failed  int64            `json:"failed"`            // records the broker did not acknowledge
	// Retained is the bytes the broker holds; Heap the load process's
	// Go heap in use.
	Retained int64  `json:"retained"`
	Heap     uint64 `json:"heap"`
	// Newest is the newest event time written (Unix ns): how far the
	// detector is behind the traffic, whatever the traffic's own delay.
	Newest int64  `json:"newest"`
	Done   bool   `json:"done,omitempty"`
	Err    string `json:"err,omitempty"`
	// FleetRate is the simulator's train-fleet rate chosen for Rate.
	FleetRate float64 `json:"fleet_rate,omitempty"`
}

// RunLoad is the load process: it reads a LoadConfig line from in, starts
// an in-process Kafka broker, says its address on out, waits for a "go"
// line, then writes simulated Wikimedia traffic in real time (event time is
// the wall clock) with the cardinality storm, reporting progress every
// second, and keeps the broker up until in is closed.
func RunLoad(ctx context.Context, in io.Reader, out io.Writer) error {
	rd := bufio.NewReader(in)
	line, err := rd.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read load config: %w", err)
	}
	var cfg LoadConfig
	if err := json.Unmarshal(line, &cfg); err != nil {
		return fmt.Errorf("parse load config: %w", err)
	}
	if cfg.AccessLogPartitions <= 0 {
		cfg.AccessLogPartitions = 8
	}
	if cfg.RetentionBytes <= 0 {
		cfg.RetentionBytes = 128 << 20
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	defer cluster.Close()
	// Small segments: retention frees whole segments only.
	tcfg := map[string]string{"retention.bytes": strconv.FormatInt(cfg.RetentionBytes, 10), "segment.bytes": strconv.Itoa(8 << 20)}
	for topic, parts := range map[string]int32{topicAccessLog: int32(cfg.AccessLogPartitions), topicEqiad: 2, topicCodfw: 2} {
		if err := cluster.CreateTopic(topic, parts, tcfg); err != nil {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
	}

	var mu sync.Mutex // serializes out
	emit := func(m loadMsg) {
		m.At = time.Now()
		b, _ := json.Marshal(m) // plain types: cannot fail
		mu.Lock()
		_, _ = out.Write(append(b, '\n'))
		mu.Unlock()
	}
	wikis, err := wikimap.Default()
	if err != nil {
		return err
	}
	fleet, err := calibrate(cfg.Rate, wikis)
	if err != nil {
		return err
	}
	emit(loadMsg{Addr: cluster.ListenAddrs()[0], FleetRate: fleet})
	if line, err = rd.ReadBytes('\n'); err != nil || string(bytes.TrimSpace(line)) != "go" {
		return fmt.Errorf("wait for go: %q %w", line, err)
	}
	// The broker lives until stdin closes, whatever happens to the traffic.
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, rd)
		close(stdinClosed)
	}()

	l := &load{cfg: cfg, written: map[string]*atomic.Int64{topicAccessLog: {}, topicEqiad: {}, topicCodfw: {}}}
	codec, err := compression(cfg.Compression)
	if err != nil {
		return err
	}
	client, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.ProducerLinger(2*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.ProducerBatchCompression(codec), kgo.RequiredAcks(kgo.LeaderAck()),
		kgo.DisableIdempotentWrite(), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer client.Close()

	// The traffic ends with its scenario; the deadline only stops a load
	// process that fell far behind real time.
	tctx, cancel := context.WithTimeout(ctx, cfg.Duration+time.Minute)
	defer cancel()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	errc := make(chan error, 2)
	go func() { errc <- l.traffic(tctx, client, wikis, fleet) }()
	go func() { errc <- l.storm(tctx, client, wikis) }()
	running := 2
	var firstErr error
	for running > 0 {
		select {
		case err := <-errc:
			running--
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && firstErr == nil {
				firstErr = err
				cancel()
			}
		case <-ticker.C:
			cluster.ApplyRetention()
			emit(l.progress(cluster))
		case <-stdinClosed:
			cancel()
		}
	}
	if err := client.Flush(ctx); err != nil && firstErr == nil {
		firstErr = fmt.Errorf("flush producer: %w", err)
	}
	final := l.progress(cluster)
	final.Done = true
	if firstErr != nil {
		final.Err = firstErr.Error()
	}
	emit(final)
	for {
		select {
		case <-stdinClosed:
			return firstErr
		case <-ctx.Done():
			return firstErr
		case <-ticker.C:
			cluster.ApplyRetention()
		}
	}
}

func compression(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "none":
		return kgo.NoCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("compression %q: want snappy, lz4, zstd or none", name)
}

func retained(c *kfake.Cluster) int64 {
	var n int64
	for _, t := range []string{topicAccessLog, topicEqiad, topicCodfw} {
		for _, p := range c.PartitionInfos(t) {
			n += p.NumBytes
		}
	}
	return n
}

func heapInuse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

type load struct {
	cfg     LoadConfig
	written map[string]*atomic.Int64
	stormed atomic.Int64
	newest  atomic.Int64
	failed  atomic.Int64
}

func (l *load) progress(c *kfake.Cluster) loadMsg {
	m := loadMsg{Written: map[string]int64{}, Storm: l.stormed.Load(), Failed: l.failed.Load(), Retained: retained(c), Heap: heapInuse(), Newest: l.newest.Load()}
	for t, n := range l.written {
		m.Written[t] = n.Load()
	}
	return m
}

// produce sends r asynchronously and counts it once acknowledged.
func (l *load) produce(ctx context.Context, client *kgo.Client, r *kgo.Record, storm bool) {
	client.Produce(ctx, r, func(r *kgo.Record, err error) {
		if err != nil {
			l.failed.Add(1)
			return
		}
		l.written[r.Topic].Add(1)
		if storm {
			l.stormed.Add(1)
		}
	})
}

// calibrate returns the simulator's fleet rate that gives rate request
// events per second now: the simulator follows a daily cycle, and testwiki
// and the error logs come on top.
func calibrate(rate float64, wikis *wikimap.Map) (float64, error) {
	const probeRate, probeFor = 5000.0, 20 * time.Second
	cfg := simulate.Config{Scenario: "quiet", Seed: 1, Start: time.Now().Truncate(time.Second), Duration: probeFor, Rate: probeRate}
	n := 0
	_, err := simulate.Run(context.Background(), cfg, wikis, func(_ context.Context, b []simulate.Record) error {
		for _, r := range b {
			if r.Topic == topicAccessLog {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("calibrate the simulator: %w", err)
	}
	if n == 0 {
		return 0, errors.New("calibrate the simulator: no requests")
	}
	return rate * probeRate / (float64(n) / probeFor.Seconds()), nil
}

// traffic writes the quiet scenario in real time. Each batch is produced
// synchronously, so the records can point into the simulator's buffers
// (which it reuses once the sink returns) and nothing is copied.
func (l *load) traffic(ctx context.Context, client *kgo.Client, wikis *wikimap.Map, fleet float64) error {
	cfg := simulate.Config{Scenario: "quiet", Seed: l.cfg.Seed, Start: time.Now(), Duration: l.cfg.Duration, Speed: 1, Rate: fleet, BatchSize: 5000}
	var recs []kgo.Record
	var ptrs []*kgo.Record
	_, err := simulate.Run(ctx, cfg, wikis, func(ctx context.Context, batch []simulate.Record) error {
		recs, ptrs = recs[:0], ptrs[:0]
		for _, r := range batch {
			recs = append(recs, kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Timestamp: r.Time})
		}
		for i := range recs {
			ptrs = append(ptrs, &recs[i])
		}
		for _, res := range client.ProduceSync(ctx, ptrs...) {
			if res.Err != nil {
				l.failed.Add(1)
				continue
			}
			l.written[res.Record.Topic].Add(1)
		}
		// The batch is in event-time order and now acknowledged.
		if ns := batch[len(batch)-1].Time.UnixNano(); ns > l.newest.Load() {
			l.newest.Store(ns)
		}
		clear(recs) // do not pin the simulator's buffers
		return nil
	})
	return err
}

var stormTimeRe = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}`)

// storm writes StormFingerprints error records, each with a message never
// seen before (so a new fingerprint), evenly over [StormAt, StormAt+StormFor).
func (l *load) storm(ctx context.Context, client *kgo.Client, wikis *wikimap.Map) error {
	if l.cfg.StormFingerprints <= 0 {
		return nil
	}
	tmpl, err := stormTemplate(wikis)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(l.cfg.StormAt):
	}
	start := time.Now()
	per := l.cfg.StormFor / time.Duration(l.cfg.StormFingerprints)
	var sec int64
	var cur []byte
	for i := range l.cfg.StormFingerprints {
		if ahead := time.Until(start.Add(time.Duration(i) * per)); ahead > time.Millisecond {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(ahead):
			}
		}
		// The storm's event time is the traffic's, not the wall clock's:
		// a load process behind real time must not make its own traffic late.
		now := time.Now()
		if n := l.newest.Load(); n > 0 {
			now = time.Unix(0, n)
		}
		if s := now.Unix(); s != sec { // restamp the template once a second
			sec = s
			stamp := now.UTC().Format("2006-01-02T15:04:05")
			cur = stormTimeRe.ReplaceAll(tmpl, []byte(stamp))
		}
		id := strconv.Itoa(i)
		v := bytes.Replace(cur, []byte(`"normalized_message":"`), []byte(`"normalized_message":"Storm `+id+` `), 1)
		v = bytes.Replace(v, []byte(`"message":"`), []byte(`"message":"Storm `+id+` `), 1)
		l.produce(ctx, client, &kgo.Record{Topic: topicEqiad, Key: []byte(id), Value: v, Timestamp: now}, true)
	}
	return nil
}

// stormTemplate is a real error-log record from the simulator, one the
// detector counts as an error.
func stormTemplate(wikis *wikimap.Map) ([]byte, error) {
	dec, err := decode.New(decode.FormatMediaWikiLog, wikis, event.NewInterner(), event.NewInterner(), decode.Options{})
	if err != nil {
		return nil, err
	}
	cfg := simulate.Config{Scenario: "quiet", Seed: 1, Start: time.Now(), Duration: 10 * time.Minute, Rate: 200}
	var tmpl []byte
	errFound := errors.New("found")
	_, err = simulate.Run(context.Background(), cfg, wikis, func(_ context.Context, b []simulate.Record) error {
		for _, r := range b {
			var ev event.Event
			if r.Topic == topicEqiad && bytes.Contains(r.Value, []byte(`"normalized_message":"`)) &&
				dec.Decode(r.Value, r.Time, &ev, nil) == nil && ev.Kind == event.KindError {
				tmpl = bytes.Clone(r.Value)
				return errFound
			}
		}
		return nil
	})
	if tmpl == nil {
		return nil, fmt.Errorf("no error record to build the storm from: %w", err)
	}
	return tmpl, nil
}
