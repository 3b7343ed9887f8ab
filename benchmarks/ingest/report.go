package ingestbench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wikimedia/pretrain-detector/simulate"
)

// Write prints the report: one table per round, then the ranges over the
// rounds.
func (rep *Report) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "ingest benchmark: %d access-log records, %.0f B average (%.2f GB uncompressed), %d partitions, batches compressed: %s, %s of simulated traffic at %.0f req/s; loaded in %s\n",
		rep.Records, float64(rep.Bytes)/float64(rep.Records), float64(rep.Bytes)/1e9, rep.Config.Partitions, simulate.CompressionName(rep.Config.Compression),
		rep.To.Sub(rep.From).Round(time.Second), rep.Config.Rate, rep.Load.Round(time.Millisecond))
	b.WriteString("every record is one event: (a) counts records, (b) and (c) decode each into one\n")
	where := "kfake in this process: its CPU and allocations are counted as the client's"
	if rep.BrokerSeparate {
		where = "kfake in a child process: client CPU and allocations exclude the broker's"
	}
	fmt.Fprintf(&b, "broker: %s\nGOMAXPROCS %d, %s; fetch max %d B, max wait %s\n", where, rep.GOMAXPROCS, rep.GOGC, rep.Config.MaxBytes, rep.Config.MaxWait)
	for i, rd := range rep.Rounds {
		fmt.Fprintf(&b, "\nround %d\n", i+1)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "run\tevents/s\twall µs/msg\tclient CPU µs/msg\tclient events/s per core\tallocs/msg\tGCs\tbroker CPU µs/msg\t")
		for _, r := range rd.Results {
			broker := "-"
			if r.BrokerCPU > 0 {
				broker = fmt.Sprintf("%.2f", r.BrokerCPU.Seconds()*1e6/float64(r.Records))
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.0f\t%.3f\t%d\t%s\t\n", label(r.Name), r.PerSecond(), r.WallMicros(), r.CPUMicros(), r.PerCore(), r.AllocsPerRecord(), r.GCs, broker)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		raw, cons, pipe := rd.Get(RunRaw), rd.Get(RunConsumer), rd.Get(RunPipeline)
		fmt.Fprintf(&b, "ratios (events/s): b/a %.2f, c/a %.2f; client CPU per record: a/b %.2f, a/c %.2f\n",
			cons.PerSecond()/raw.PerSecond(), pipe.PerSecond()/raw.PerSecond(), raw.CPUMicros()/cons.CPUMicros(), raw.CPUMicros()/pipe.CPUMicros())
		fmt.Fprintf(&b, "pipeline: %d events in the window (%d skipped, %d rejected by ingest), %d evaluations taking %s\n",
			pipe.Windowed, pipe.Skipped, pipe.Rejected, pipe.Evaluations, pipe.EvalTime.Round(time.Microsecond))
	}
	if len(rep.Rounds) > 1 {
		b.WriteString("\nranges over the rounds\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "run\tevents/s\tclient CPU µs/msg\tclient events/s per core\tallocs/msg\t")
		for _, r := range rep.Rounds[0].Results {
			rs := rep.results(r.Name)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", label(r.Name), span(rs, Result.PerSecond, "%.0f"), span(rs, Result.CPUMicros, "%.2f"),
				span(rs, Result.PerCore, "%.0f"), span(rs, Result.AllocsPerRecord, "%.3f"))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		var ba, ca []float64
		for _, rd := range rep.Rounds {
			ba = append(ba, rd.Get(RunConsumer).PerSecond()/rd.Get(RunRaw).PerSecond())
			ca = append(ca, rd.Get(RunPipeline).PerSecond()/rd.Get(RunRaw).PerSecond())
		}
		fmt.Fprintf(&b, "ratios: b/a %.2f–%.2f, c/a %.2f–%.2f\n", minOf(ba), maxOf(ba), minOf(ca), maxOf(ca))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func (rep *Report) results(name string) []Result {
	var out []Result
	for _, rd := range rep.Rounds {
		if r := rd.Get(name); r.Name != "" {
			out = append(out, r)
		}
	}
	return out
}

func label(name string) string {
	switch name {
	case RunRaw:
		return "(a) raw kafka-go ReadBatch"
	case RunConsumer:
		return "(b) ingest.Consumer + decoders"
	case RunPipeline:
		return "(c) pipeline: window + detect"
	case RunRawBuffered:
		return "(a') raw, buffered conn"
	case RunConsumerBuffered:
		return "(b') consumer, buffered conn"
	case RunClientFetch:
		return "(a‴) raw kafka-go Client.Fetch"
	case RunFranzGo:
		return "(a\") raw franz-go PollFetches"
	}
	return name
}

func span(rs []Result, f func(Result) float64, format string) string {
	var vs []float64
	for _, r := range rs {
		vs = append(vs, f(r))
	}
	return fmt.Sprintf(format+"–"+format, minOf(vs), maxOf(vs))
}

func minOf(vs []float64) float64 {
	m := math.Inf(1)
	for _, v := range vs {
		m = math.Min(m, v)
	}
	return m
}

func maxOf(vs []float64) float64 {
	m := math.Inf(-1)
	for _, v := range vs {
		m = math.Max(m, v)
	}
	return m
}
