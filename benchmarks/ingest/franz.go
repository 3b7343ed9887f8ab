package ingestbench

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// franzStage is an optional second raw baseline: franz-go's PollFetches
// over the same partitions, counting bytes. franz-go decodes a fetch in
// place (records point into slabs, about 0.01 allocations per record) and
// reads whole responses: it shows how much of (a)'s cost is the client
// library's.
type franzStage struct {
	e              *env
	cl             *kgo.Client
	records, bytes int64
}

func newFranzStage(e *env) (stage, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(e.addrs...), kgo.ClientID("ingestbench"),
		kgo.ConsumeTopics(e.cfg.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(e.cfg.MaxWait), kgo.FetchMinBytes(int32(e.cfg.MinBytes)),
		kgo.FetchMaxBytes(int32(e.cfg.MaxBytes)), kgo.FetchMaxPartitionBytes(int32(e.cfg.MaxBytes)),
	)
	if err != nil {
		return nil, fmt.Errorf("franz-go client: %w", err)
	}
	return &franzStage{e: e, cl: cl}, nil
}

func (s *franzStage) run(ctx context.Context) error {
	for s.records < s.e.records {
		fs := s.cl.PollFetches(ctx)
		if errs := fs.Errors(); len(errs) > 0 {
			e := errs[0]
			return fmt.Errorf("fetch %s partition %d: %w", e.Topic, e.Partition, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			s.records++
			s.bytes += int64(len(r.Key) + len(r.Value))
		})
	}
	return nil
}

func (s *franzStage) result(r *Result) error {
	r.Records, r.Bytes, r.Events = s.records, s.bytes, s.records
	return nil
}

func (s *franzStage) close() error {
	s.cl.Close()
	return nil
}
