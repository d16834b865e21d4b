package l4

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A peer that stops reading must not make sluice buffer what the other
// peer goes on sending: a relay direction reads into one buffer (or one
// pipe) and reads again only once that has been written on, so TCP's flow
// control pushes back to the sender. These tests and the benchmark below
// show it from outside: with every socket's buffers capped, what a sender
// can write before its writes stall is about the sum of those buffers,
// however long it tries, and what sluice holds per stalled connection is
// a fixed amount of heap.

// stallBuf caps SO_RCVBUF and SO_SNDBUF of every socket involved (Linux
// doubles it for its bookkeeping), so that the kernel's share is small and
// known.
const stallBuf = 64 << 10

// stallLimit is what a sender may get written before it stalls: four
// sockets of capped buffers on the way (the sender's, sluice's two, the
// receiver's), each at most 2 × stallBuf per direction, plus sluice's
// 32 KiB relay buffer and crypto/tls's records, with room to spare. An
// unbounded relay takes all of stallCap.
const (
	stallLimit = 3 << 20
	stallCap   = 64 << 20
)

// stallQuiet is how long a sender's write may make no progress before it
// counts as stalled. A slow machine that pauses longer only makes the
// count smaller; it cannot make an unbounded relay look bounded.
const stallQuiet = 300 * time.Millisecond

// capBuffers is a net.ListenConfig / net.Dialer Control that caps a
// socket's buffers at stallBuf before it connects or listens (accepted
// sockets inherit a listener's).
func capBuffers(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, stallBuf); serr == nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, stallBuf)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// writeUntilStalled writes to c until a write makes no progress for
// stallQuiet, or stallCap bytes are written, and returns how many were.
func writeUntilStalled(c net.Conn) (int64, error) {
	chunk := make([]byte, 64<<10)
	var n int64
	for n < stallCap {
		c.SetWriteDeadline(time.Now().Add(stallQuiet))
		m, err := c.Write(chunk)
		n += int64(m)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// stallBackend accepts connections with capped buffers and never reads
// them; with flood, it writes to each until it stalls, and reports how
// much it wrote on written.
type stallBackend struct {
	net.Listener
	conns   chan net.Conn
	written chan int64
}

func newStallBackend(tb testing.TB, flood bool) *stallBackend {
	tb.Helper()
	lc := net.ListenConfig{Control: capBuffers}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	be := &stallBackend{Listener: ln, conns: make(chan net.Conn, 1<<16), written: make(chan int64, 1<<16)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			be.conns <- c
			if flood {
				wg.Go(func() {
					n, _ := writeUntilStalled(c)
					be.written <- n
				})
			}
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
		close(be.conns)
		for c := range be.conns {
			c.Close()
		}
	})
	return be
}

// stallConfig is a world's simple configuration towards be with every
// sluice socket's buffers capped, TLS or plain.
func stallConfig(w *world, be *stallBackend, useTLS bool) *Config {
	cfg := w.simple(be.Addr().String())
	if !useTLS {
		cfg.Listeners[0].TLS = nil
	}
	cfg.Listeners[0].RcvBuf, cfg.Listeners[0].SndBuf = stallBuf, stallBuf
	cfg.Upstreams[0].RcvBuf, cfg.Upstreams[0].SndBuf = stallBuf, stallBuf
	return cfg
}

// stallDial connects to addr with capped buffers, over TLS or not.
func stallDial(tb testing.TB, w *world, addr string, useTLS bool) net.Conn {
	tb.Helper()
	d := net.Dialer{Timeout: testTimeout, Control: capBuffers}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { raw.Close() })
	if !useTLS {
		return raw
	}
	c := tls.Client(raw, &tls.Config{RootCAs: w.pool, ServerName: "localhost"})
	c.SetDeadline(time.Now().Add(testTimeout))
	if err := c.Handshake(); err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Time{})
	return c
}

// TestStalledPeerBackpressure: a backend that never reads, and a client
// that never reads, stall their sender after a bounded number of bytes,
// and sluice goes on serving other clients meanwhile.
func TestStalledPeerBackpressure(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		t.Run(name+"/backend_stalled", func(t *testing.T) {
			w := newWorld(t)
			be := newStallBackend(t, false)
			_, addrs := w.serve(stallConfig(w, be, useTLS))
			c := stallDial(t, w, addrs[0], useTLS)
			n, err := writeUntilStalled(c)
			if err != nil {
				t.Fatalf("client write: %v after %d bytes", err, n)
			}
			t.Logf("the client wrote %d KiB before it stalled", n>>10)
			if n > stallLimit {
				t.Errorf("the client wrote %d bytes to a backend that reads nothing, want at most %d", n, stallLimit)
			}
			stallStillServes(t, w, be, addrs[0], useTLS)
		})
		t.Run(name+"/client_stalled", func(t *testing.T) {
			w := newWorld(t)
			be := newStallBackend(t, true)
			_, addrs := w.serve(stallConfig(w, be, useTLS))
			stallDial(t, w, addrs[0], useTLS)
			var n int64
			select {
			case n = <-be.written:
			case <-time.After(testTimeout):
				t.Fatal("the backend never stalled")
			}
			t.Logf("the backend wrote %d KiB before it stalled", n>>10)
			if n > stallLimit {
				t.Errorf("the backend wrote %d bytes to a client that reads nothing, want at most %d", n, stallLimit)
			}
			stallStillServes(t, w, be, addrs[0], useTLS)
		})
	}
}

// stallStillServes checks that a new client gets through to the backend
// while the stalled connection is held.
func stallStillServes(t *testing.T, w *world, be *stallBackend, addr string, useTLS bool) {
	t.Helper()
	c := stallDial(t, w, addr, useTLS)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("second client: %v", err)
	}
	// The backend has the stalled connection, then this one.
	deadline := time.After(testTimeout)
	for range 2 {
		select {
		case <-deadline:
			t.Fatal("the backend did not get the second connection")
		case bc := <-be.conns:
			t.Cleanup(func() { bc.Close() })
		}
	}
}

// BenchmarkStalledConnMemory holds connections whose backend, or whose
// client, has stopped reading while the other side sent until it stalled,
// and reports what each costs sluice (heap, goroutine stacks), as
// BenchmarkIdleConnMemory does. Every socket's buffers are capped (see
// stallBuf), which bounds the kernel's share and not sluice's.
//
//	go test -run '^$' -bench StalledConnMemory -benchtime 500x ./l4
func BenchmarkStalledConnMemory(b *testing.B) {
	for _, tc := range []struct {
		name    string
		tls     bool
		backend bool // the backend stalls; else the client does
	}{
		{"tls/backend_stalled", true, true},
		{"tls/client_stalled", true, false},
		{"plain/backend_stalled", false, true},
		{"plain/client_stalled", false, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w := newWorld(b)
			be := newStallBackend(b, !tc.backend)
			_, addrs := w.serve(stallConfig(w, be, tc.tls))
			// The backend's conns close before sluice shuts down, which
			// would otherwise wait for the stalled relays until its deadline.
			b.Cleanup(func() {
				for {
					select {
					case c := <-be.conns:
						c.Close()
					default:
						return
					}
				}
			})
			n := b.N
			conns := make([]net.Conn, n)
			before := memNow()
			for i := range conns {
				conns[i] = stallDial(b, w, addrs[0], tc.tls)
			}
			// Every sender writes until it stalls, all at once.
			var wg sync.WaitGroup
			for _, c := range conns {
				if tc.backend {
					wg.Go(func() { writeUntilStalled(c) })
				}
			}
			wg.Wait()
			if !tc.backend {
				for range n {
					select {
					case <-be.written:
					case <-time.After(testTimeout):
						b.Fatal("a backend sender never stalled")
					}
				}
			}
			reportMem(b, before, n)
		})
	}
}
