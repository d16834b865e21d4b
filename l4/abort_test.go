package l4

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// abortEnds is one connection through sluice, as both of its peers hold
// it: the test's client and the test's backend, each with the TCP socket
// beneath.
type abortEnds struct {
	w                     *world
	p                     *Proxy
	cfg                   *Config
	client, backend       net.Conn // TLS or plain, as the route kind has it
	clientRaw, backendRaw *net.TCPConn
}

// routeKinds are the ways a connection can cross sluice.
var routeKinds = []string{"terminate", "plain", "websocket", "passthrough"}

const wsHead = "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// connectThrough opens one connection of the given route kind through a
// fresh sluice whose listener is changed by tune, and returns both ends once
// bytes can flow.
func connectThrough(t *testing.T, kind string, tune func(*ListenerConfig)) *abortEnds {
	t.Helper()
	w := newWorld(t)
	accepted := make(chan net.Conn, 1)
	release := make(chan struct{})
	be := w.backend(func(c net.Conn) {
		accepted <- c
		<-release
	})
	t.Cleanup(func() { close(release) })
	yes := true
	l := ListenerConfig{Name: "l", TLS: &TLSConfig{Certificates: []CertConfig{w.cert("localhost")}},
		Routes: []RouteConfig{{Name: "r", Upstream: "app"}}}
	switch kind {
	case "plain":
		l.TLS = nil
	case "websocket":
		l.Routes[0].WebSocket = &yes
	case "passthrough":
		l.TLS = nil
		l.Routes[0].Mode, l.Routes[0].SNI = "passthrough", []string{"localhost"}
	}
	if tune != nil {
		tune(&l)
	}
	cfg := &Config{Listeners: []ListenerConfig{l},
		Upstreams: []UpstreamConfig{{Name: "app", Servers: []string{be.addr()}}}}
	p, addrs := w.serve(cfg)

	e := &abortEnds{w: w, p: p, cfg: cfg}
	raw, err := net.DialTimeout("tcp", addrs[0], testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	e.clientRaw, e.client = raw.(*net.TCPConn), raw
	e.client.SetDeadline(time.Now().Add(testTimeout))
	clientTLS := tls.Client(raw, &tls.Config{RootCAs: w.pool, ServerName: "localhost"})
	handshake := func() {
		if err := clientTLS.Handshake(); err != nil {
			t.Errorf("client handshake: %v", err)
		}
	}
	switch kind {
	case "terminate", "websocket":
		handshake()
		e.client = clientTLS
	case "passthrough":
		// The backend's handshake needs the backend conn: run the
		// client's beside it.
		done := make(chan struct{})
		go func() { defer close(done); handshake() }()
		defer func() { <-done; e.client = clientTLS }()
	}
	if kind == "websocket" {
		if _, err := io.WriteString(e.client, wsHead); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case c := <-accepted:
		e.backendRaw, e.backend = c.(*net.TCPConn), c
	case <-time.After(testTimeout):
		t.Fatal("backend got no connection")
	}
	e.backend.SetDeadline(time.Now().Add(testTimeout))
	switch kind {
	case "websocket":
		readExactly(t, e.backend, wsHead)
	case "passthrough":
		cert, _, _ := issue(t, w.ca, w.caKey, "localhost", []string{"localhost"}, false)
		tc := tls.Server(e.backend, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("backend handshake: %v", err)
		}
		e.backend = tc
	}
	return e
}

func readExactly(t *testing.T, c net.Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %d bytes: %v", len(want), err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// expectReset reads c to its end, which must be a reset: never a clean end
// of stream, which over TLS would mean close_notify.
func expectReset(t *testing.T, who string, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	n, err := io.Copy(io.Discard, c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s read %d more bytes, then %v; want a reset", who, n, err)
	}
}

// TestAbortsReachTheOtherSide: on every kind of route, a reset on one side
// is a reset on the other, and a connection cut by sluice (the end of a
// drain, the idle timeout) is reset on both sides, never ended cleanly.
func TestAbortsReachTheOtherSide(t *testing.T) {
	for _, kind := range routeKinds {
		t.Run(kind+"/backend_reset", func(t *testing.T) {
			e := connectThrough(t, kind, nil)
			data := bytes.Repeat([]byte("d"), 64<<10)
			if _, err := e.backend.Write(data); err != nil {
				t.Fatal(err)
			}
			readExactly(t, e.client, string(data))
			e.backendRaw.SetLinger(0)
			e.backendRaw.Close()
			expectReset(t, "client", e.client)
			e.w.waitLog("level=WARN", "msg=access", "reason=backend_reset", "client_end=cut", "backend_end=reset")
		})
		t.Run(kind+"/client_reset", func(t *testing.T) {
			e := connectThrough(t, kind, nil)
			if _, err := io.WriteString(e.client, "ping"); err != nil {
				t.Fatal(err)
			}
			readExactly(t, e.backend, "ping")
			e.clientRaw.SetLinger(0)
			e.clientRaw.Close()
			expectReset(t, "backend", e.backend)
			e.w.waitLog("level=INFO", "msg=access", "reason=client_reset", "client_end=reset", "backend_end=cut")
		})
		t.Run(kind+"/drain_cut", func(t *testing.T) {
			e := connectThrough(t, kind, nil)
			io.WriteString(e.client, "ping")
			readExactly(t, e.backend, "ping")
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := e.p.Shutdown(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Shutdown = %v, want context.Canceled", err)
			}
			expectReset(t, "client", e.client)
			expectReset(t, "backend", e.backend)
			e.w.waitLog("msg=access", "reason=canceled")
		})
		t.Run(kind+"/idle_timeout", func(t *testing.T) {
			e := connectThrough(t, kind, func(l *ListenerConfig) { l.IdleTimeout = Duration{200 * time.Millisecond} })
			expectReset(t, "client", e.client)
			expectReset(t, "backend", e.backend)
			e.w.waitLog("msg=access", "reason=idle_timeout")
		})
	}
}

// TestCleanEndsStayClean: ends that are not aborts pass on as they came:
// a FIN, with close_notify first where sluice terminates TLS.
func TestCleanEndsStayClean(t *testing.T) {
	for _, kind := range routeKinds {
		t.Run(kind, func(t *testing.T) {
			e := connectThrough(t, kind, nil)
			closeWrite(t, e.backend)
			if rest := readAll(t, e.client); len(rest) != 0 {
				t.Fatalf("client read %d bytes", len(rest))
			}
			// Through a passthrough route the client's close_notify is
			// the backend's, relayed ahead of the FIN: wait for sluice's
			// FIN too, or the client's end could reach sluice first.
			if rest := readAll(t, e.clientRaw); len(rest) != 0 {
				t.Fatalf("client read %d bytes after the end of its TLS stream", len(rest))
			}
			closeWrite(t, e.client)
			if rest := readAll(t, e.backend); len(rest) != 0 {
				t.Fatalf("backend read %d bytes", len(rest))
			}
			e.w.waitLog("level=INFO", "msg=access", "reason=backend_closed", "client_end=closed", "backend_end=closed")
		})
	}
}

// TestTLSTruncationReported: a TLS client that ends its stream without
// close_notify reaches the backend as a FIN (see splice.Relay), the
// backend's answer still reaches the client, and the access log says the
// client truncated.
func TestTLSTruncationReported(t *testing.T) {
	for _, kind := range []string{"terminate", "websocket"} {
		t.Run(kind, func(t *testing.T) {
			e := connectThrough(t, kind, nil)
			io.WriteString(e.client, "last words")
			if err := e.clientRaw.CloseWrite(); err != nil { // a bare FIN
				t.Fatal(err)
			}
			if got := readAll(t, e.backend); string(got) != "last words" {
				t.Fatalf("backend got %q", got)
			}
			io.WriteString(e.backend, "answer")
			closeWrite(t, e.backend)
			if got := readAll(t, e.client); string(got) != "answer" {
				t.Fatalf("client got %q", got)
			}
			e.w.waitLog("level=INFO", "msg=access", "reason=client_truncated", "client_end=truncated", "backend_end=closed")
		})
	}
}

// TestFailureBeforeRelayIsReset: a TLS client whose backend cannot be
// reached was told nothing by the handshake; it must see a reset, not the
// close_notify of a server that ended a complete exchange.
func TestFailureBeforeRelayIsReset(t *testing.T) {
	w := newWorld(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	_, addrs := w.serve(w.simple(dead))
	c := w.mustDialTLS(addrs[0], nil)
	expectReset(t, "client", c)
	w.waitLog("level=WARN", "msg=access", "reason=upstream_unavailable")
}

// closeWrite half-closes c: close_notify, then a FIN, on TLS.
func closeWrite(t *testing.T, c net.Conn) {
	t.Helper()
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		c = tc.NetConn()
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
}
