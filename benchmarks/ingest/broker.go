package ingestbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Broker is the Kafka the benchmark loads and reads.
type Broker interface {
	Addrs() []string
	// CPU is the CPU time the broker has used so far. ok is false when the
	// broker runs in this process, where its CPU cannot be told apart from
	// the client's.
	CPU() (d time.Duration, ok bool)
	Close() error
}

// CPUMark is the CPU this process (the client) and the broker have used
// up to one moment: taken at the start of a run, Since gives the run's.
type CPUMark struct {
	client, broker time.Duration
	brokerOK       bool
}

// MarkCPU reads the client's and the broker's CPU now.
func MarkCPU(b Broker) CPUMark {
	var m CPUMark
	m.client, _ = ProcessCPU()
	m.broker, m.brokerOK = b.CPU()
	return m
}

// Since is the client's and the broker's CPU from m to now; brokerOK is
// false when the broker's could not be read at either end.
func (m CPUMark) Since(b Broker) (client, broker time.Duration, brokerOK bool) {
	now := MarkCPU(b)
	if m.brokerOK && now.brokerOK {
		broker, brokerOK = now.broker-m.broker, true
	}
	return now.client - m.client, broker, brokerOK
}

// InProcess is a kfake cluster in this process. It is what tests use; its
// CPU is counted as the client's, which understates the client's speed.
type InProcess struct{ c *kfake.Cluster }

// StartInProcess starts kfake with topic seeded with partitions partitions.
func StartInProcess(topic string, partitions int) (*InProcess, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), topic))
	if err != nil {
		return nil, fmt.Errorf("start kfake: %w", err)
	}
	return &InProcess{c: c}, nil
}

func (b *InProcess) Addrs() []string            { return b.c.ListenAddrs() }
func (b *InProcess) CPU() (time.Duration, bool) { return 0, false }

// Close stops the cluster.
func (b *InProcess) Close() error {
	b.c.Close()
	return nil
}

// The child broker speaks a line protocol on its stdin and stdout: it
// first writes "addrs <host:port>[,…]"; each "cpu" line it reads is
// answered with "cpu <nanoseconds>" of its own CPU time; end of input stops
// it. The parent dying closes the pipe, so the child never outlives it.
const (
	lineAddrs = "addrs "
	lineCPU   = "cpu"
)

// ServeBroker runs kfake for a parent process (see StartChild) until in
// ends or ctx is done. It is the body of the child process.
func ServeBroker(ctx context.Context, in io.Reader, out io.Writer, topic string, partitions int) error {
	b, err := StartInProcess(topic, partitions)
	if err != nil {
		return err
	}
	defer func() { _ = b.Close() }()
	if _, err := fmt.Fprintf(out, "%s%s\n", lineAddrs, strings.Join(b.Addrs(), ",")); err != nil {
		return fmt.Errorf("announce broker address: %w", err)
	}
	lines := make(chan string)
	scanErr := make(chan error, 1)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(in)
		for s.Scan() {
			select {
			case lines <- s.Text():
			case <-ctx.Done():
				scanErr <- nil
				return
			}
		}
		scanErr <- s.Err()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-lines:
			if !ok {
				if err := <-scanErr; err != nil {
					return fmt.Errorf("read commands: %w", err)
				}
				return nil
			}
			if l != lineCPU {
				return fmt.Errorf("unknown command %q", l)
			}
			cpu, _ := ProcessCPU()
			if _, err := fmt.Fprintf(out, "%s %d\n", lineCPU, int64(cpu)); err != nil {
				return fmt.Errorf("answer cpu: %w", err)
			}
		}
	}
}

// Child is kfake in a child process, so that the broker's CPU is not the
// client's: with 2 cores, an in-process kfake takes a large share of the
// CPU the client is being measured on, and its allocations land in the
// client's MemStats.
type Child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	addrs []string

	mu sync.Mutex // one cpu question at a time
}

// StartChild starts cmd, which must run ServeBroker on its stdin and
// stdout (the benchmark command re-executes itself), and waits for the
// broker's address.
func StartChild(cmd *exec.Cmd) (*Child, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("broker stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("broker stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start broker process: %w", err)
	}
	c := &Child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	line, err := c.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, lineAddrs) {
		_ = stdin.Close()
		werr := cmd.Wait()
		return nil, fmt.Errorf("broker process did not announce its address (got %q): %w", line, errors.Join(err, werr))
	}
	c.addrs = strings.Split(strings.TrimSpace(strings.TrimPrefix(line, lineAddrs)), ",")
	return c, nil
}

// StartSelf starts this executable with args, its hidden broker command, as
// the broker process of a benchmark command, its errors going to stderr.
// The broker keeps Go's default GC whatever the client is being tried
// with: GOGC=off with a GOMEMLIMIT below the 1.6 GB it holds would make it
// collect without end.
func StartSelf(stderr io.Writer, args ...string) (*Child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for the broker process: %w", err)
	}
	c := exec.Command(exe, args...)
	c.Stderr = stderr
	c.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "GOGC=") || strings.HasPrefix(kv, "GOMEMLIMIT=")
	})
	return StartChild(c)
}

func (c *Child) Addrs() []string { return c.addrs }

// CPU asks the child for its CPU time.
func (c *Child) CPU() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.stdin, lineCPU+"\n"); err != nil {
		return 0, false
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return 0, false
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, lineCPU)), 10, 64)
	if err != nil || ns == 0 { // 0: the child cannot measure itself
		return 0, false
	}
	return time.Duration(ns), true
}

// Close ends the child's input, which stops it, and waits for it.
func (c *Child) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stdin.Close(); err != nil {
		return fmt.Errorf("close broker stdin: %w", err)
	}
	if err := c.cmd.Wait(); err != nil {
		return fmt.Errorf("broker process: %w", err)
	}
	return nil
}
