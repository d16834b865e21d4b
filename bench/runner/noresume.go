package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"
)

// checkNoResumption makes two connections to a listener that is to have no
// session resumption (a peer's TLS and WS listeners), sharing a session
// cache, and fails if the second resumed. S3 is full handshakes: a client
// that keeps its session from one connection to the next, as wrk does
// (SSL_clear), resumes wherever the server issues tickets, and the run
// would then compare one peer's resumed handshakes with the others' full
// ones. hitch, which has no switch for tickets, did so through
// twenty-two make bench runs before this check.
func checkNoResumption(ctx context.Context, addr string) error {
	cfg := &tls.Config{
		InsecureSkipVerify: true, // the bench's self-signed certificate
		ClientSessionCache: tls.NewLRUClientSessionCache(1),
		CurvePreferences:   []tls.CurveID{tls.X25519}, // as wrk and loadgen
	}
	for i := range 2 {
		resumed, err := requestOnce(ctx, addr, cfg)
		if err != nil {
			return fmt.Errorf("resumption check on %s, connection %d: %w", addr, i+1, err)
		}
		if resumed {
			return fmt.Errorf("%s resumed a TLS session: it issues session tickets (or keeps a session cache) where resumption is to be off, so S3 would measure resumed handshakes for it", addr)
		}
	}
	return nil
}

// requestOnce does what one of S3's connections does, a handshake and a
// GET with Connection: close read to its end, and reports whether the
// handshake resumed. The read lets the client take the tickets a server
// sends after the handshake.
func requestOnce(ctx context.Context, addr string, cfg *tls.Config) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"); err != nil {
		return false, fmt.Errorf("write: %w", err)
	}
	// The answer itself does not matter (the WS listener's backend may
	// take no plain GET), only reading until the server is done.
	if _, err := io.Copy(io.Discard, c); err != nil {
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			return false, fmt.Errorf("read: %w", err)
		}
	}
	return c.(*tls.Conn).ConnectionState().DidResume, nil
}
