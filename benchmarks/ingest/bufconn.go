package ingestbench

import (
	"bufio"
	"context"
	"fmt"
	"net"

	"github.com/segmentio/kafka-go"

	"github.com/wikimedia/pretrain-detector/ingest"
)

// bufConn puts a large read buffer under kafka-go's Conn. A kafka-go Conn
// reads through a 4 KiB bufio.Reader, so a fetch of 1.6-KB records costs a
// read(2) per two or three records; the profile of the raw run shows that
// syscall as a third of the client's CPU. Reading the socket in large
// pieces turns most of those syscalls into a memmove. It is the
// experiment behind Config.ReadBuffer; the change it argues for belongs in
// ingest.NewDialer.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// bufferedDialer returns a Dialer whose connections read through a
// size-byte buffer.
func bufferedDialer(clientID string, size int) *kafka.Dialer {
	nd := &net.Dialer{}
	d := ingest.NewDialer(clientID, nil, nil)
	d.DialFunc = func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := nd.DialContext(ctx, network, address)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", address, err)
		}
		return &bufConn{Conn: c, r: bufio.NewReaderSize(c, size)}, nil
	}
	return d
}
