package replay

import (
	"fmt"
	"time"

	"github.com/prometheus/common/version"

	"github.com/wikimedia/pretrain-detector/report"
)

// Report is the result as the report's input (report.Write,
// report.WriteSummary), with its warnings.
func (res Result) Report() report.Data {
	d := report.Data{
		Version: version.Version, From: res.From, To: res.To, Start: res.Start, Elapsed: res.Elapsed,
		Records: res.Records, Rejected: res.Rejected, Skipped: res.Skipped, Events: res.Events, Verdicts: res.Verdicts,
		Warnings: res.Warnings(),
	}
	for _, t := range res.Topics {
		d.Inputs = append(d.Inputs, report.Input{Cluster: t.Cluster, Topic: t.Topic, Format: t.Format, Partitions: t.Partitions,
			Records: t.Records, Bytes: t.Bytes, Rejected: t.Rejected, Skipped: t.Skipped})
	}
	for _, dp := range res.Deploys {
		d.Deploys = append(d.Deploys, report.Deploy{Scope: dp.Scope.String(), Group: dp.Group, Version: dp.Version, Source: dp.Source,
			At: time.Unix(0, dp.At).UTC()})
	}
	for _, f := range res.Findings {
		d.Findings = append(d.Findings, report.Finding{Finding: f, Plot: res.Plots[f.ID]})
	}
	return d
}

// Warnings are what a reader of the result must know to trust it.
func (res Result) Warnings() []string {
	var out []string
	for _, t := range res.Missing {
		out = append(out, fmt.Sprintf("topic %s does not exist: replayed without it", t))
	}
	for _, p := range res.StartsAfterStart {
		out = append(out, fmt.Sprintf("%s partition %d: the oldest record retained is from %s, after the warm-up start %s: the range begins before the data, so findings near its start may be missing",
			p.Topic, p.Partition, p.Oldest.UTC().Format(time.RFC3339), res.Start.UTC().Format(time.RFC3339)))
	}
	return out
}
