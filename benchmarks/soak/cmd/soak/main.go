// Command soak runs the detector's soak benchmark (package soak): realistic
// Wikimedia traffic at a high rate for a long time, with a cardinality
// storm, through the daemon's pipeline, sampling the detector's RSS, CPU and
// lag every 10 s.
//
//	go run ./benchmarks/soak/cmd/soak                                    # 10 min, 200k events/s, 1M new fingerprints
//	go run ./benchmarks/soak/cmd/soak --duration=30s --rate=20000 --storm=100000
//
// The broker and the traffic run in a second process (this binary
// re-executed with the hidden "load" command), so the numbers are the
// detector's own.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"

	"github.com/wikimedia/pretrain-detector/benchmarks/soak"
)

func main() { os.Exit(realMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func realMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := kingpin.New("soak", "Soak the detector's pipeline: high-rate realistic traffic, a cardinality storm, RSS, CPU and lag every 10 s.")
	app.HelpFlag.Short('h')
	app.Writer(stdout)
	app.ErrorWriter(stderr)
	// --help prints and must end the program, but realMain returns rather
	// than exits (tests call it): note the request and return.
	terminated := false
	app.Terminate(func(int) { terminated = true })
	logCfg := &promslog.Config{Writer: stderr}
	promslogflag.AddFlags(app, logCfg)

	runCmd := app.Command("run", "Run the soak.").Default()
	var cfg soak.Config
	runCmd.Flag("duration", "How long the traffic runs.").Default("10m").DurationVar(&cfg.Duration)
	runCmd.Flag("rate", "Request events per second (the target; the simulator's traffic drifts about 1% around it).").Default("210000").Float64Var(&cfg.Rate)
	runCmd.Flag("storm", "New error fingerprints written during the storm (0: no storm).").Default("1000000").IntVar(&cfg.StormFingerprints)
	runCmd.Flag("storm-at", "When the storm begins (default: a fifth into the run).").DurationVar(&cfg.StormAt)
	runCmd.Flag("storm-for", "How long the storm lasts (default: a fifth of the run).").DurationVar(&cfg.StormFor)
	runCmd.Flag("sample", "Sampling interval.").Default("10s").DurationVar(&cfg.Sample)
	runCmd.Flag("partitions", "Partitions of the access-log topic.").Default("8").IntVar(&cfg.AccessLogPartitions)
	runCmd.Flag("retention-bytes", "Bytes the broker keeps per partition.").Default(fmt.Sprint(128 << 20)).Int64Var(&cfg.RetentionBytes)
	runCmd.Flag("compression", "Compression of the produced batches: snappy, lz4, zstd or none.").Default("snappy").EnumVar(&cfg.Compression, "snappy", "lz4", "zstd", "none")
	loadCmd := app.Command("load", "Internal: the load process (broker and traffic), driven on stdin and stdout.").Hidden()

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 2
	}
	if terminated {
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if cmd == loadCmd.FullCommand() {
		if err := soak.RunLoad(ctx, stdin, stdout); err != nil {
			fmt.Fprintf(stderr, "soak load: %v\n", err)
			return 1
		}
		return 0
	}
	if cfg.StormFingerprints == 0 {
		cfg.StormFingerprints = -1 // the flag's 0 means none; the Config's 0 means the default
	}
	cfg.Logger = promslog.New(logCfg)
	cfg.Progress = stdout
	cfg.Load = func() *exec.Cmd {
		c := exec.Command(os.Args[0], "load")
		c.Stderr = stderr
		return c
	}
	start := time.Now()
	rep, err := soak.Run(ctx, cfg)
	fmt.Fprintln(stdout)
	rep.Print(stdout)
	fmt.Fprintf(stdout, "took %s\n", time.Since(start).Round(time.Second))
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 1
	}
	return 0
}
