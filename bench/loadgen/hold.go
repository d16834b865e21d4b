package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// holdReport is the JSON of the DONE line of hold mode.
type holdReport struct {
	ClosedByPeer int `json:"closed_by_peer"` // closed by the terminator while held
	// How long after it opened a connection was closed by the terminator:
	// the median and the longest, in seconds (absent if none was).
	PeerCloseP50 float64 `json:"peer_close_p50_s,omitempty"`
	PeerCloseMax float64 `json:"peer_close_max_s,omitempty"`
	HeldSeconds  float64 `json:"held_seconds"` // from READY to closing
	TimedOut     bool    `json:"timed_out"`    // -timeout expired before stdin's EOF
}

// runHold is hold mode (S4): it opens cfg.conns TLS connections to
// cfg.addr (plain TCP ones with cfg.plain), completing each handshake and
// then sending nothing, prints
// READY, holds them until stdin reaches EOF or cfg.timeout expires, closes
// them and prints DONE. A goroutine per connection blocks in a 1-byte read
// to notice connections the peer closes. It returns an error only if it
// cannot write to stdout.
func runHold(ctx context.Context, cfg config, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	host, _, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		return err
	}
	d := newDialer(cfg, host, nil)

	conns := make([]net.Conn, cfg.conns)
	var closing atomic.Bool // set before we close the connections ourselves
	var byPeer atomic.Int64
	var peerClose histogram // lifetimes of the connections the peer closed
	var readers sync.WaitGroup
	watch := func(c net.Conn, opened time.Time) {
		var b [1]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				if !closing.Load() {
					byPeer.Add(1)
					peerClose.record(time.Since(opened))
				}
				return
			}
		}
	}
	ready := openAll(ctx, cfg, stderr, func(ctx context.Context, i int) error {
		var c net.Conn
		var err error
		if cfg.plain {
			c, err = d.dialTCP(ctx, cfg.addr)
		} else {
			c, err = d.dialTLS(ctx, cfg.addr)
		}
		if err != nil {
			return err
		}
		conns[i] = c
		opened := time.Now()
		readers.Go(func() { watch(c, opened) })
		return nil
	})
	closeAll := func() {
		closing.Store(true)
		for _, c := range conns {
			if c != nil {
				c.Close() // sends close_notify; the reader then returns
			}
		}
		readers.Wait()
	}
	if err := writeTagged(stdout, "READY", ready); err != nil {
		closeAll()
		return err
	}

	start := time.Now()
	bar := startProgress(stderr, func() string {
		return fmt.Sprintf("holding %d conns (%d closed by peer)", ready.Opened, byPeer.Load())
	})
	var timedOut bool
	select {
	case <-awaitEOF(stdin):
	case <-ctx.Done():
		timedOut = true
	}
	bar.Stop()
	held := time.Since(start)

	closeAll()
	return writeTagged(stdout, "DONE", holdReport{
		ClosedByPeer: int(byPeer.Load()),
		PeerCloseP50: round3(peerClose.quantile(0.5).Seconds()),
		PeerCloseMax: round3(peerClose.maximum().Seconds()),
		HeldSeconds:  round3(held.Seconds()),
		TimedOut:     timedOut,
	})
}
