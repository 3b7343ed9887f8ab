// Command ingestbench runs the ingest benchmark (package ingestbench): it
// loads 1M realistic access-log records into kfake and prints the rates of
// raw kafka-go consumption, the ingest Consumer with its decoders, and the
// full pipeline through window and detect, with their ratios.
//
//	go run ./benchmarks/ingest/cmd/ingestbench [--rounds=3] [--read-buffer=262144] [--franz-go] [--client-fetch] [--cpuprofile=/tmp/ingest]
//
// --read-buffer, --franz-go and --client-fetch add runs that show what the client library
// costs (see the package documentation).
//
// By default the broker runs in a child process (this binary re-executed
// with the hidden "broker" command), so the client's CPU time and
// allocations are measured without kfake's.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"

	ingestbench "github.com/wikimedia/pretrain-detector/benchmarks/ingest"
	"github.com/wikimedia/pretrain-detector/simulate"
)

func main() { os.Exit(realMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// options are the flags of the benchmark.
type options struct {
	compression string
	cfg         ingestbench.Config
	broker      string // "child" or "inproc"
	stderr      io.Writer
}

func realMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := kingpin.New("ingestbench", "Times raw kafka-go consumption, the ingest Consumer and the full pipeline over the same access-log records.")
	app.HelpFlag.Short('h')
	app.Writer(stdout)
	app.ErrorWriter(stderr)
	app.Terminate(nil)
	logCfg := &promslog.Config{Writer: stderr}
	promslogflag.AddFlags(app, logCfg)

	runCmd := app.Command("run", "Run the benchmark.").Default()
	o := options{stderr: stderr}
	runCmd.Flag("records", "Access-log records to load.").Default(strconv.Itoa(ingestbench.DefaultRecords)).IntVar(&o.cfg.Records)
	runCmd.Flag("partitions", "Partitions of the topic.").Default(strconv.Itoa(ingestbench.DefaultPartitions)).IntVar(&o.cfg.Partitions)
	runCmd.Flag("rate", "Simulated train-fleet requests/s (production: about 20000).").Default(strconv.FormatFloat(ingestbench.DefaultRate, 'f', -1, 64)).Float64Var(&o.cfg.Rate)
	runCmd.Flag("seed", "Simulator seed.").Default("1").Int64Var(&o.cfg.Seed)
	runCmd.Flag("compression", "Compression of the loaded record batches: "+strings.Join(simulate.Compressions(), ", ")+".").Default("none").EnumVar(&o.compression, simulate.Compressions()...)
	runCmd.Flag("rounds", "Times to repeat the three runs over the loaded records.").Default("1").IntVar(&o.cfg.Rounds)
	runCmd.Flag("kafka.max-bytes", "Fetch size per partition (0: the detector's default).").IntVar(&o.cfg.MaxBytes)
	runCmd.Flag("broker", "Where kfake runs: child (its own process, so its CPU is not the client's) or inproc.").Default("child").EnumVar(&o.broker, "child", "inproc")
	runCmd.Flag("read-buffer", "Also run (a) and (b) with connections reading the socket through a buffer of this many bytes (0: off).").IntVar(&o.cfg.ReadBuffer)
	runCmd.Flag("franz-go", "Also run franz-go's consumer as a second raw baseline.").BoolVar(&o.cfg.FranzGo)
	runCmd.Flag("client-fetch", "Also run kafka-go's Client.Fetch (pooled pages, no copy per value) as a third raw baseline.").BoolVar(&o.cfg.ClientFetch)
	runCmd.Flag("cpuprofile", "Write a CPU profile of each run to <prefix>-<round>-<run>.pprof.").StringVar(&o.cfg.CPUProfile)

	brokerCmd := app.Command("broker", "Serve kfake to a parent ingestbench over stdin/stdout.").Hidden()
	var topic string
	var partitions int
	brokerCmd.Flag("topic", "Topic to create.").Required().StringVar(&topic)
	brokerCmd.Flag("partitions", "Partitions of the topic.").Required().IntVar(&partitions)

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if cmd == "" { // --help
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case brokerCmd.FullCommand():
		err = ingestbench.ServeBroker(ctx, stdin, stdout, topic, partitions)
	default:
		o.cfg.Logger = promslog.New(logCfg)
		if o.cfg.Compression, err = simulate.ParseCompression(o.compression); err == nil {
			err = run(ctx, o, stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "ingestbench:", err)
		return 1
	}
	return 0
}

// run starts the broker as asked and runs the benchmark.
func run(ctx context.Context, o options, stdout io.Writer) error {
	cfg := o.cfg
	topic := cfg.Topic
	if topic == "" {
		topic = "mediawiki.httpd.accesslog"
		cfg.Topic = topic
	}
	if o.broker == "child" {
		partitions := cfg.Partitions
		if partitions == 0 {
			partitions = ingestbench.DefaultPartitions
		}
		child, err := ingestbench.StartSelf(o.stderr, "broker", "--topic="+topic, "--partitions="+strconv.Itoa(partitions))
		if err != nil {
			return err
		}
		defer func() {
			if err := child.Close(); err != nil {
				cfg.Logger.Warn("Stopping the broker process", "err", err)
			}
		}()
		cfg.Broker = child
	}
	start := time.Now()
	rep, err := ingestbench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := rep.Write(stdout); err != nil {
		return err
	}
	cfg.Logger.Debug("Benchmark done", "duration", time.Since(start))
	return nil
}
