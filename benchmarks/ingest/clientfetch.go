package ingestbench

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/segmentio/kafka-go"
)

// clientFetchStage is an optional third raw baseline: kafka-go's
// Client.Fetch, the library's newer read path. It reads a whole fetch into
// pooled pages and checks each batch's CRC, and records refer into the
// pages, so it allocates about nothing per record where Batch.ReadMessage
// allocates each key and value; each value is copied once into a reused
// buffer here, as a decoder would need it contiguous. It shows whether
// kafka-go's other API would buy the Consumer anything (measured: no; it
// costs more client CPU per record than Batch.Read into a reused buffer,
// which the Consumer now does).
type clientFetchStage struct {
	e  *env
	tr *kafka.Transport
	cl *kafka.Client
	counted
}

func newClientFetchStage(e *env) (stage, error) {
	tr := &kafka.Transport{ClientID: "ingestbench"}
	return &clientFetchStage{e: e, tr: tr, cl: &kafka.Client{Addr: kafka.TCP(e.addrs...), Transport: tr}}, nil
}

func (s *clientFetchStage) run(ctx context.Context) error {
	return eachPartition(s.e.cfg.Partitions, func(p int) error { return s.readPartition(ctx, p) })
}

func (s *clientFetchStage) readPartition(ctx context.Context, p int) error {
	addr, err := net.ResolveTCPAddr("tcp", s.e.addrs[0])
	if err != nil {
		return fmt.Errorf("resolve %s: %w", s.e.addrs[0], err)
	}
	topic := s.e.cfg.Topic
	lo, err := s.cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Addr: addr,
		Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p)}}})
	if err != nil {
		return fmt.Errorf("list offsets of partition %d: %w", p, err)
	}
	po := lo.Topics[topic]
	if len(po) != 1 || po[0].Error != nil {
		return fmt.Errorf("list offsets of partition %d: %v", p, po)
	}
	var (
		buf            = make([]byte, 0, 64<<10)
		records, bytes int64
	)
	for off, last := po[0].FirstOffset, po[0].LastOffset; off < last; {
		resp, err := s.cl.Fetch(ctx, &kafka.FetchRequest{Addr: addr, Topic: topic, Partition: p, Offset: off,
			MinBytes: int64(s.e.cfg.MinBytes), MaxBytes: int64(s.e.cfg.MaxBytes), MaxWait: s.e.cfg.MaxWait})
		if err != nil {
			return fmt.Errorf("fetch partition %d at offset %d: %w", p, off, err)
		}
		if resp.Error != nil {
			return fmt.Errorf("fetch partition %d at offset %d: %w", p, off, resp.Error)
		}
		for {
			r, err := resp.Records.ReadRecord()
			if err != nil {
				break // io.EOF at the end of the fetch
			}
			if r.Offset < off { // a batch may begin before the asked offset
				continue
			}
			for _, b := range []kafka.Bytes{r.Key, r.Value} {
				if b == nil {
					continue
				}
				n := b.Len()
				if cap(buf) < n {
					buf = make([]byte, n)
				}
				if _, err := io.ReadFull(b, buf[:n]); err != nil {
					return fmt.Errorf("read record %d of partition %d: %w", r.Offset, p, err)
				}
				bytes += int64(n)
				_ = b.Close() // returns the pages to the pool
			}
			records++
			off = r.Offset + 1
		}
	}
	s.add(records, bytes)
	return nil
}

func (s *clientFetchStage) close() error {
	s.tr.CloseIdleConnections()
	return nil
}
