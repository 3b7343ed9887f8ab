// Command detector tells, within minutes and with evidence, whether code
// deployed to Pretrain is hurting the wikis. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/wikimedia/pretrain-detector/simulate"
)

func main() { os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr)) }

// Default port of the web endpoints; documented in deploy/.
const defaultListen = ":9797"

// commonOptions are the flags every mode shares.
type commonOptions struct {
	configFile string
	brokers    []string
	logger     *slog.Logger
	stdout     io.Writer
	stderr     io.Writer
}

// realMain parses flags, builds the logger and calls the mode's run
// function. It returns the process exit code.
func realMain(args []string, stdout, stderr io.Writer) int {
	// `detector verdict --version=V` names a deploy, while the app's own
	// --version prints the detector's: verdict is parsed on its own.
	if len(args) > 0 && args[0] == "verdict" {
		return verdictMain(args[1:], stdout, stderr)
	}
	app := kingpin.New("detector", "Tells, within minutes and with evidence, whether code deployed to Pretrain is hurting the wikis.")
	app.Version(version.Print("detector"))
	app.HelpFlag.Short('h')
	app.Writer(stdout)
	app.ErrorWriter(stderr)
	// --help and --version print and must then stop, without kingpin
	// calling os.Exit under our deferred cleanup.
	terminated := false
	app.Terminate(func(int) { terminated = true })

	var c commonOptions
	logCfg := &promslog.Config{Writer: stderr}
	promslogflag.AddFlags(app, logCfg)
	app.Flag("config.file", "Configuration file (YAML). Without it every default describes Wikimedia production.").StringVar(&c.configFile)

	runCmd := app.Command("run", "Run the detector as a daemon.").Default()
	var ro runOptions
	ro.addFlags(runCmd, &c.brokers)

	replayCmd := app.Command("replay", "Run the detector over a time range of historical topics and exit.")
	var rp replayOptions
	rp.addFlags(replayCmd)

	demoCmd := app.Command("demo", "Run an in-process Kafka, simulated Wikimedia traffic and the detector: a Pretrain incident end to end.")
	var do demoOptions
	do.addFlags(demoCmd)

	simCmd := app.Command("simulate", "Produce realistic Wikimedia traffic into a Kafka cluster.")
	var so simulateOptions
	so.addFlags(simCmd)

	// Listed for --help; verdictMain parses it (see realMain's start).
	app.Command("verdict", "Ask a running detector for a deploy's verdict: exit 0 pass, 1 fail, 2 insufficient evidence, 3 error (detector verdict --help).")

	app.Command("version", "Print the version and exit.")

	cmd, err := app.Parse(args)
	if terminated {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "detector: %v\n", err)
		if slices.Contains(args, "verdict") {
			return exitError // 2 would read as "insufficient evidence"; verdict's flags go after it
		}
		return 2
	}
	c.logger = promslog.New(logCfg)
	c.stdout, c.stderr = stdout, stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case "version":
		fmt.Fprintln(stdout, version.Print("detector"))
		return 0
	case runCmd.FullCommand():
		ro.common = c
		err = runRun(ctx, ro)
	case replayCmd.FullCommand():
		c.brokers = rp.brokers
		rp.common = c
		err = runReplay(ctx, rp)
	case demoCmd.FullCommand():
		do.common = c
		err = runDemo(ctx, do)
	case simCmd.FullCommand():
		so.common = c
		err = runSimulate(ctx, so)
	}
	if err != nil {
		fmt.Fprintf(stderr, "detector %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// shutdownTimeout bounds the ordered shutdown, which must end within 10 s
// (Kubernetes' grace period; README "Operations").
// It is measured from the signal; the HTTP server's stop gets the last
// httpShutdownSlice of it (and at least that much).
const (
	shutdownTimeout   = 8 * time.Second
	httpShutdownSlice = time.Second
)

// runRun is `detector run`: GOMEMLIMIT from the cgroup, then the daemon.
func runRun(ctx context.Context, o runOptions) error {
	if o.autoMemLimit {
		if err := setMemLimit(o.common.logger, o.memLimitRatio, memlimit.FromCgroup); err != nil {
			return err
		}
	}
	return runDaemon(ctx, o)
}

// addFlags registers run's flags; --kafka.brokers goes to brokers (common
// to every mode that reads Kafka).
func (o *runOptions) addFlags(cmd *kingpin.CmdClause, brokers *[]string) {
	cmd.Flag("kafka.brokers", "Kafka brokers (host:port, comma-separated or repeated); overrides every cluster's brokers in the config.").StringsVar(brokers)
	cmd.Flag("alertmanager.url", "Alertmanager base URL (repeatable; alerts go to all).").StringsVar(&o.alertmanagers)
	cmd.Flag("alertmanager.resend-delay", "How often firing alerts are re-sent (overrides alerting.resend_delay).").DurationVar(&o.resendDelay)
	cmd.Flag("web.external-url", "The URL under which the detector is reachable, for alert links.").StringVar(&o.externalURL)
	cmd.Flag("web.enable-lifecycle", "Enable POST /-/reload.").BoolVar(&o.enableLifecycle)
	o.web = kingpinflag.AddFlags(cmd, defaultListen)
	addWebLimitFlags(cmd, &o.limits)
	cmd.Flag("auto-gomemlimit", "Set GOMEMLIMIT from the container's cgroup memory limit (a GOMEMLIMIT in the environment wins).").Default("true").BoolVar(&o.autoMemLimit)
	cmd.Flag("auto-gomemlimit.ratio", "The share of the cgroup memory limit GOMEMLIMIT is set to, in (0, 1].").Default("0.9").Float64Var(&o.memLimitRatio)
}

// addFlags registers demo's flags.
func (o *demoOptions) addFlags(cmd *kingpin.CmdClause) {
	cmd.Flag("web.listen-address", "Address of the web endpoints during the demo.").Default("127.0.0.1:9797").StringVar(&o.listen)
	cmd.Flag("exit-when-done", "Exit when the story ends: 0 if the scripted incident was found, 1 otherwise.").BoolVar(&o.exitWhenDone)
	cmd.Flag("speed", "Simulated seconds per wall second.").Default("45").Float64Var(&o.speed)
	cmd.Flag("seed", "Simulator seed.").Default("1").Int64Var(&o.seed)
	cmd.Flag("scenario", "Simulator scenario to tell.").Default("demo").StringVar(&o.scenario)
}

// addFlags registers simulate's flags.
func (o *simulateOptions) addFlags(cmd *kingpin.CmdClause) {
	cmd.Flag("kafka.brokers", "Kafka brokers (host:port, comma-separated or repeated); required unless --list.").StringsVar(&o.brokers)
	cmd.Flag("scenario", "Scenario name (see --list).").Default("quiet").StringVar(&o.scenario)
	cmd.Flag("list", "List the scenarios and exit.").BoolVar(&o.list)
	cmd.Flag("seed", "Random seed: the same seed gives the same records.").Default("1").Int64Var(&o.seed)
	cmd.Flag("speed", "Simulated seconds per wall second; 0 = as fast as possible.").Default("0").Float64Var(&o.speed)
	cmd.Flag("duration", "Simulated duration; 0 = the scenario's own.").Default("0").DurationVar(&o.duration)
	cmd.Flag("start", "Simulated start time (RFC 3339); empty = the scenario's own.").StringVar(&o.start)
	cmd.Flag("rate", "Train-fleet requests per simulated second; 0 = default.").Default("0").Float64Var(&o.rate)
	cmd.Flag("truth", "Write the scenario's ground truth (JSON) to this file.").StringVar(&o.truth)
	cmd.Flag("create-topics", "Create missing topics with this many partitions (0 = do not).").Default("4").IntVar(&o.partitions)
	cmd.Flag("compression", "Compression of the record batches written: "+strings.Join(simulate.Compressions(), ", ")+".").
		Default(simulate.DefaultProducerCompression.String()).EnumVar(&o.compression, simulate.Compressions()...)
}
