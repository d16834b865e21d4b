package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// backendServer serves the stream protocol: for each connection it reads
// the optional WebSocket upgrade and the header, answers with its ack,
// moves the payloads and reports one verdict. It is what `soak backend`
// runs, and what the tests run in-process.
type backendServer struct {
	TLS     *tls.Config   // nil: plain TCP
	Timeout time.Duration // each connection's whole life
	PID     int           // the instance id sent in the ack
	Emit    func(verdict) // called once per connection that said anything

	wg sync.WaitGroup
}

// Serve accepts until ln is closed. Connections go on; Wait waits for them.
// ln is to come from listenAborting.
func (b *backendServer) Serve(ln net.Listener) error {
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			// EMFILE and the like: the soak's load is bounded, so wait it out.
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		b.wg.Add(1)
		go b.serveConn(c.(*net.TCPConn))
	}
}

// Wait waits for every accepted connection to end, or ctx.
func (b *backendServer) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go waitGroup(&b.wg, done)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func waitGroup(wg *sync.WaitGroup, done chan<- struct{}) {
	wg.Wait()
	close(done)
}

func (b *backendServer) serveConn(raw *net.TCPConn) {
	defer b.wg.Done()
	// The socket has SO_LINGER 0 from its listener (listenAborting): a
	// stream that ends well is closed in order (finish restores the
	// default linger), anything else with a RST.
	raw.SetDeadline(time.Now().Add(b.Timeout))
	v, said := b.stream(raw)
	if !said {
		raw.Close()
		return
	}
	v.PID = b.PID
	b.Emit(v)
	if v.Status == statusOK {
		finish(raw)
	} else {
		abort(raw)
	}
}

// stream runs one stream; said is false if the peer closed without a byte.
func (b *backendServer) stream(raw *net.TCPConn) (v verdict, said bool) {
	var conn net.Conn = raw
	fail := func(phase string, err error) (verdict, bool) {
		return verdict{ID: v.ID, Want: v.Want, Status: statusFail, Cause: phase + ":" + errCause(err)}, true
	}
	if b.TLS != nil {
		tc := tls.Server(raw, b.TLS)
		if err := tc.Handshake(); err != nil {
			return fail("handshake", err)
		}
		conn = tc
	}
	br := bufio.NewReaderSize(conn, 4096)
	first, err := br.Peek(4)
	if err == io.EOF && len(first) == 0 && b.TLS == nil {
		return v, false
	}
	if err != nil {
		return fail("header", err)
	}
	if string(first) == "GET " {
		if err := wsAcceptUpgrade(br, conn); err != nil {
			return fail("upgrade", err)
		}
	}
	hb := make([]byte, headerLen)
	if _, err := io.ReadFull(br, hb); err != nil {
		return fail("header", err)
	}
	h, err := parseHeader(hb)
	if err != nil {
		return fail("header", err)
	}
	v.ID, v.Want = h.ID, h.Up
	if _, err := conn.Write(marshalAck(b.PID)); err != nil {
		return fail("ack", err)
	}
	e := endpoint{conn: conn, r: br, raw: raw}
	o := exchange(e, h.Seed, leg{dirDown, h.Down}, leg{dirUp, h.Up}, orderFor(h.Mode, false))
	v.Status, v.Cause = o.status("down", "up")
	v.Got, v.Corrupt = o.rcv.Got, o.rcv.Corrupt
	return v, true
}
