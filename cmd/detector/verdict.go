package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	verdicts "github.com/wikimedia/pretrain-detector/verdict"
)

// Exit codes of `detector verdict`: what a pipeline acts on.
const (
	exitPass         = 0
	exitFail         = 1
	exitInsufficient = 2
	exitError        = 3
)

type verdictOptions struct {
	common   commonOptions
	url      string
	version  string
	group    string
	wait     time.Duration
	interval time.Duration
	output   string
}

// verdictMain parses `detector verdict`'s flags and runs it.
func verdictMain(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("detector verdict", "Ask a running detector for a deploy's verdict, waiting while it is pending. "+
		"Exit 0 pass, 1 fail, 2 insufficient evidence, 3 error (unreachable, unknown deploy, still pending when the wait ends).")
	app.HelpFlag.Short('h')
	app.Writer(stdout)
	app.ErrorWriter(stderr)
	terminated := false
	app.Terminate(func(int) { terminated = true })
	var o verdictOptions
	o.addFlags(app)
	_, err := app.Parse(args)
	if terminated {
		return exitPass
	}
	if err != nil {
		fmt.Fprintf(stderr, "detector verdict: %v\n", err)
		return exitError
	}
	o.common = commonOptions{stdout: stdout, stderr: stderr}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runVerdict(ctx, o)
}

// flagger is what takes flags: the app or a command.
type flagger interface {
	Flag(name, help string) *kingpin.FlagClause
}

func (o *verdictOptions) addFlags(cmd flagger) {
	cmd.Flag("url", "The detector's base URL.").Default("http://localhost" + defaultListen).StringVar(&o.url)
	cmd.Flag("version", "The deploy's version: the Pretrain rollout or the train version, as findings' deploy.version carries it.").Required().StringVar(&o.version)
	cmd.Flag("group", "The train group, when a train version was deployed to several.").StringVar(&o.group)
	cmd.Flag("wait", "How long to wait for a verdict that is not pending (0: ask once).").Default("0").DurationVar(&o.wait)
	cmd.Flag("interval", "How often to ask while waiting.").Default("15s").DurationVar(&o.interval)
	cmd.Flag("output", "Output format: text or json (the API's object).").Default("text").EnumVar(&o.output, "text", "json")
}

// runVerdict is `detector verdict`: it asks GET /api/v1/deploys/{version}
// until the verdict is not pending or --wait has passed, prints it and
// returns the exit code: 0 pass, 1 fail, 2 insufficient evidence, 3 an
// error (the detector unreachable, the deploy unknown or still pending
// when the wait ends).
func runVerdict(ctx context.Context, o verdictOptions) int {
	r, err := pollVerdict(ctx, o, &http.Client{Timeout: 30 * time.Second})
	if err != nil {
		fmt.Fprintf(o.common.stderr, "detector verdict: %v\n", err)
		return exitError
	}
	if o.output == "json" {
		enc := json.NewEncoder(o.common.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(o.common.stderr, "detector verdict: %v\n", err)
			return exitError
		}
	} else {
		what := r.Scope
		if r.Group != "" {
			what += " " + r.Group
		}
		fmt.Fprintf(o.common.stdout, "%s: %s deploy %s at %s: %s", r.Verdict, what, r.Version, r.At.UTC().Format(time.RFC3339), r.Evidence.Reason)
		if len(r.Findings) > 0 {
			fmt.Fprintf(o.common.stdout, " (findings %s; %s/findings/%s)", strings.Join(r.Findings, ", "),
				strings.TrimRight(o.url, "/"), url.PathEscape(r.Findings[0]))
		}
		fmt.Fprintln(o.common.stdout)
	}
	switch r.Verdict {
	case verdicts.Pass:
		return exitPass
	case verdicts.Fail:
		return exitFail
	case verdicts.Insufficient:
		return exitInsufficient
	}
	fmt.Fprintf(o.common.stderr, "detector verdict: still %s after %s\n", r.Verdict, o.wait)
	return exitError
}

// pollVerdict asks until the verdict is final or the wait is over. While
// it waits, an error is asked again too: a deploy the detector has not seen
// yet (404; its first events or its marker may be on the way) or a
// detector restarting.
func pollVerdict(ctx context.Context, o verdictOptions, c *http.Client) (verdicts.Result, error) {
	base, err := url.Parse(strings.TrimRight(o.url, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return verdicts.Result{}, fmt.Errorf("--url: want http(s)://host:port, got %q", o.url)
	}
	// One path segment, whatever the version holds ("/" included).
	u := base.String() + "/api/v1/deploys/" + url.PathEscape(o.version)
	if o.group != "" {
		u += "?" + url.Values{"group": {o.group}}.Encode()
	}
	deadline := time.Now().Add(o.wait)
	for {
		r, err := getVerdict(ctx, c, u)
		if (err == nil && r.Verdict != verdicts.Pending) || !time.Now().Add(o.interval).Before(deadline) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(o.interval):
		}
	}
}

func getVerdict(ctx context.Context, c *http.Client, u string) (verdicts.Result, error) {
	var r verdicts.Result
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return r, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return r, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return r, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusNotFound {
			return r, fmt.Errorf("GET %s: %s", u, msg)
		}
		return r, fmt.Errorf("GET %s: %s: %s", u, resp.Status, msg)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("GET %s: not a verdict: %w", u, err)
	}
	switch r.Verdict {
	case verdicts.Pass, verdicts.Fail, verdicts.Insufficient, verdicts.Pending:
	default:
		return r, fmt.Errorf("GET %s: unknown verdict %q", u, r.Verdict)
	}
	return r, nil
}
