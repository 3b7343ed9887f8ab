// Command replaybench runs the replay benchmark (package replaybench): it
// loads realistic access-log records into kfake and prints the records/s of
// raw kafka-go consumption and of `detector replay`'s pipeline over them,
// their ratio, and how long one simulated day at Wikimedia's rate would
// take to replay.
//
//	go run ./benchmarks/replay/cmd/replaybench [--rounds=3] [--records=1000000]
//
// By default the broker runs in a child process (this binary re-executed
// with the hidden "broker" command), so that kfake's CPU and allocations
// are not the client's.
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

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"

	ingestbench "github.com/wikimedia/pretrain-detector/benchmarks/ingest"
	replaybench "github.com/wikimedia/pretrain-detector/benchmarks/replay"
	"github.com/wikimedia/pretrain-detector/simulate"
)

func main() { os.Exit(realMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func realMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := kingpin.New("replaybench", "Times raw kafka-go consumption and the deterministic replay over the same access-log records.")
	app.HelpFlag.Short('h')
	app.Writer(stdout)
	app.ErrorWriter(stderr)
	app.Terminate(nil)
	logCfg := &promslog.Config{Writer: stderr}
	promslogflag.AddFlags(app, logCfg)

	runCmd := app.Command("run", "Run the benchmark.").Default()
	var cfg replaybench.Config
	var broker string
	runCmd.Flag("records", "Access-log records to load.").Default(strconv.Itoa(replaybench.DefaultRecords)).IntVar(&cfg.Records)
	runCmd.Flag("partitions", "Partitions of the topic.").Default(strconv.Itoa(replaybench.DefaultPartitions)).IntVar(&cfg.Partitions)
	runCmd.Flag("rate", "Simulated train-fleet requests/s (production: about 20000).").Default(strconv.FormatFloat(replaybench.DefaultRate, 'f', -1, 64)).Float64Var(&cfg.Rate)
	runCmd.Flag("seed", "Simulator seed.").Default("1").Int64Var(&cfg.Seed)
	var compression string
	runCmd.Flag("compression", "Compression of the loaded record batches: "+strings.Join(simulate.Compressions(), ", ")+".").Default("none").EnumVar(&compression, simulate.Compressions()...)
	runCmd.Flag("rounds", "Times to repeat the raw and replay runs over the loaded records.").Default(strconv.Itoa(replaybench.DefaultRounds)).IntVar(&cfg.Rounds)
	runCmd.Flag("broker", "Where kfake runs: child (its own process) or inproc.").Default("child").EnumVar(&broker, "child", "inproc")
	runCmd.Flag("cpuprofile", "Write a CPU profile of each replay run to <prefix>-<round>.pprof.").StringVar(&cfg.CPUProfile)

	brokerCmd := app.Command("broker", "Serve kfake to a parent replaybench over stdin/stdout.").Hidden()
	var partitions int
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
		err = ingestbench.ServeBroker(ctx, stdin, stdout, simulate.DefaultAccessLog, partitions)
	default:
		cfg.Logger = promslog.New(logCfg)
		if cfg.Compression, err = simulate.ParseCompression(compression); err == nil {
			err = run(ctx, cfg, broker, stdout, stderr)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "replaybench:", err)
		return 1
	}
	return 0
}

// run starts the broker as asked and runs the benchmark.
func run(ctx context.Context, cfg replaybench.Config, broker string, stdout, stderr io.Writer) error {
	if broker == "child" {
		child, err := ingestbench.StartSelf(stderr, "broker", "--partitions="+strconv.Itoa(cfg.Partitions))
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
	rep, err := replaybench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	return rep.Write(stdout)
}
