package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

type simulateOptions struct {
	common      commonOptions
	brokers     []string
	scenario    string
	list        bool
	seed        int64
	speed       float64
	duration    time.Duration
	start       string
	rate        float64
	truth       string
	partitions  int
	compression string
}

// runSimulate is `detector simulate`: realistic traffic into any Kafka.
func runSimulate(ctx context.Context, o simulateOptions) error {
	if o.list {
		tw := tabwriter.NewWriter(o.common.stdout, 0, 4, 2, ' ', 0)
		for _, s := range simulate.Scenarios() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.DefaultDuration, s.Description)
		}
		return tw.Flush()
	}
	brokers := splitList(o.brokers)
	if len(brokers) == 0 {
		return errors.New("--kafka.brokers is required (unless --list)")
	}
	wikis, err := wikimap.Default()
	if err != nil {
		return err
	}
	cfg := simulate.Config{Scenario: o.scenario, Seed: o.seed, Duration: o.duration, Speed: o.speed, Rate: o.rate, Topics: simTopics()}
	if o.start != "" {
		if cfg.Start, err = time.Parse(time.RFC3339, o.start); err != nil {
			return fmt.Errorf("--start: %w", err)
		}
	}
	gt, err := simulate.Plan(cfg, wikis)
	if err != nil {
		return err
	}
	topics := append(append([]string(nil), cfg.Topics.ErrorTopics...), cfg.Topics.AccessLog)
	if err := ensureTopics(ctx, brokers, topics, o.partitions); err != nil {
		return err
	}
	codec, err := simulate.ParseCompression(o.compression)
	if err != nil {
		return err
	}
	p, err := simulate.NewProducer(simulate.ProducerOptions{Brokers: brokers, Compression: codec})
	if err != nil {
		return err
	}
	var n int
	sink := p.Sink()
	counted := func(ctx context.Context, batch []simulate.Record) error {
		n += len(batch)
		return sink(ctx, batch)
	}
	start := time.Now()
	o.common.logger.Info("Simulating", "scenario", gt.Scenario, "seed", gt.Seed, "from", gt.Start, "to", gt.End, "speed", o.speed)
	_, err = simulate.Run(ctx, cfg, wikis, counted)
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	o.common.logger.Info("Simulation done", "records", n, "seconds", secs, "records_per_second", int64(float64(n)/secs))
	if o.truth != "" {
		b, err := json.MarshalIndent(gt, "", "  ")
		if err != nil {
			return fmt.Errorf("encode ground truth: %w", err)
		}
		if err := os.WriteFile(o.truth, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write ground truth: %w", err)
		}
	}
	return nil
}

// ensureTopics creates the topics that do not exist yet, so that records
// are spread over several partitions (auto-created topics get one).
func ensureTopics(ctx context.Context, brokers []string, topics []string, partitions int) error {
	if partitions <= 0 {
		return nil
	}
	var conn *kafka.Conn
	var err error
	for _, b := range brokers {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err = kafka.DialContext(dctx, "tcp", b)
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("kafka %v: %w", brokers, err)
	}
	defer func() { _ = conn.Close() }()
	ctrl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("find kafka controller: %w", err)
	}
	cc, err := kafka.Dial("tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		return fmt.Errorf("dial kafka controller: %w", err)
	}
	defer func() { _ = cc.Close() }()
	var cfgs []kafka.TopicConfig
	for _, t := range topics {
		cfgs = append(cfgs, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: 1})
	}
	if err := cc.CreateTopics(cfgs...); err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topics: %w", err)
	}
	return nil
}

// simTopics are the topics the simulator writes to: those of the
// detector's default configuration, read from config.Default so the
// production topic list has one source.
func simTopics() simulate.Topics {
	var t simulate.Topics
	cfg := config.Default()
	for _, ct := range cfg.Topics() {
		switch ct.Topic.Format {
		case string(decode.FormatMediaWikiLog):
			t.ErrorTopics = append(t.ErrorTopics, ct.Topic.Name)
		case string(decode.FormatAccessLog):
			t.AccessLog = ct.Topic.Name
		}
	}
	return t
}
