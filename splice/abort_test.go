package splice

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// What a peer's socket sees when its connection ends.
const (
	sawCloseNotify = "close_notify" // TLS: a clean end of stream
	sawFIN         = "fin"          // TCP: a clean end of stream
	sawTruncated   = "truncated"    // TLS: a FIN without close_notify
	sawReset       = "reset"        // a RST
)

// farEnd reads c until it fails and says how its stream ended. Only one
// call learns of a RST (the socket's error is reported once), and a writer
// on the same socket may take it; the TCP state tells: a reset socket is
// CLOSE, one that got a FIN is CLOSE_WAIT. A TLS client reads io.EOF both
// for close_notify and for a bare FIN at a record boundary; over an
// eofRecorder, it was a bare FIN if the socket itself reported EOF.
//
// A socket that sent its own FIN first is CLOSE after the peer's FIN too
// (the kernel hands the connection to a TIME_WAIT socket): sentFIN turns
// the state check off.
func farEnd(c net.Conn, sentFIN bool) (string, error) {
	c.SetReadDeadline(time.Now().Add(testTimeout))
	_, err := io.Copy(io.Discard, c)
	var raw net.Conn = c
	tc, isTLS := c.(*tls.Conn)
	if isTLS {
		raw = tc.NetConn()
	}
	rec, _ := raw.(*eofRecorder)
	if rec != nil {
		raw = rec.Conn
	}
	switch {
	case errors.Is(err, syscall.ECONNRESET), !sentFIN && (err == nil || errors.Is(err, io.ErrUnexpectedEOF)) && tcpState(raw) == unix.BPF_TCP_CLOSE:
		return sawReset, nil
	case errors.Is(err, io.ErrUnexpectedEOF), err == nil && rec != nil && rec.eof.Load():
		return sawTruncated, nil
	case err == nil && isTLS:
		return sawCloseNotify, nil
	case err == nil:
		return sawFIN, nil
	}
	return "", fmt.Errorf("read to the end: %w", err)
}

// tcpState returns the kernel's TCP state of c (unix.BPF_TCP_*).
func tcpState(c net.Conn) uint8 {
	rc := rawSocket(c)
	if rc == nil {
		return 0
	}
	var info *unix.TCPInfo
	control(rc, func(fd int) (err error) {
		info, err = unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		return err
	})
	if info == nil {
		return 0
	}
	return info.State
}

// eofRecorder notes whether its conn's reads reached EOF.
type eofRecorder struct {
	net.Conn
	eof atomic.Bool
}

func (r *eofRecorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if err == io.EOF {
		r.eof.Store(true)
	}
	return n, err
}

func (r *eofRecorder) CloseWrite() error { return r.Conn.(closeWriter).CloseWrite() }

// abortCfg is tr's world configuration with the test client's TLS over an
// eofRecorder, for farEnd.
func abortCfg(tr transport, opts Options) worldConfig {
	cfg := tr.cfg(opts)
	cfg.wrapClient = func(c net.Conn) net.Conn { return &eofRecorder{Conn: c} }
	return cfg
}

// readReset reads c to its end and fails unless the end is a RST.
func readReset(c net.Conn) error {
	saw, err := farEnd(c, false)
	if err == nil && saw != sawReset {
		err = fmt.Errorf("saw %s, want a reset", saw)
	}
	return err
}

func expectFarEnd(tb testing.TB, c net.Conn, want string) {
	tb.Helper()
	expectFarEndAfter(tb, c, want, false)
}

func expectFarEndAfter(tb testing.TB, c net.Conn, want string, sentFIN bool) {
	tb.Helper()
	saw, err := farEnd(c, sentFIN)
	if err != nil {
		tb.Fatal(err)
	}
	if saw != want {
		tb.Fatalf("peer saw %s, want %s", saw, want)
	}
}

// streaming starts the backend sending to the client, and the client
// reading it, so the relay is mid-stream in that direction.
func streaming(tb testing.TB, w *world) {
	tb.Helper()
	go flood(make(chan error, 1), w.backend)
	readFull(tb, w.client, 64<<10)
}

// TestRelayAbortStaysAbort: however a relay is torn down, by a peer's reset,
// a cancellation or a timeout, neither peer sees a clean end of stream: a
// plain peer sees a RST and a TLS peer never gets close_notify.
func TestRelayAbortStaysAbort(t *testing.T) {
	cases := []struct {
		name  string
		opts  Options
		cut   func(tb testing.TB, w *world) // tears the relay down
		check func(tb testing.TB, w *world) // what the remaining peers see
		want  Stats
	}{{
		name: "backend_reset",
		cut:  func(tb testing.TB, w *world) { streaming(tb, w); reset(tb, w.backend) },
		check: func(tb testing.TB, w *world) {
			expectFarEnd(tb, w.client, sawReset)
		},
		want: Stats{Reason: BackendReset, BackendEnd: EndReset, ClientEnd: EndCut},
	}, {
		name: "client_reset",
		cut: func(tb testing.TB, w *world) {
			mustWrite(tb, w.client, []byte("ping"))
			readFull(tb, w.backend, 4)
			reset(tb, w.clientRaw)
		},
		check: func(tb testing.TB, w *world) { expectFarEnd(tb, w.backend, sawReset) },
		want:  Stats{Reason: ClientReset, ClientEnd: EndReset, BackendEnd: EndCut},
	}, {
		name: "client_reset_while_backend_sends",
		cut:  func(tb testing.TB, w *world) { streaming(tb, w); reset(tb, w.clientRaw) },
		check: func(tb testing.TB, w *world) {
			expectFarEnd(tb, w.backend, sawReset)
		},
		want: Stats{Reason: ClientReset, ClientEnd: EndReset, BackendEnd: EndCut},
	}, {
		name: "canceled",
		cut:  func(tb testing.TB, w *world) { streaming(tb, w); w.cancel() },
		check: func(tb testing.TB, w *world) {
			expectFarEnd(tb, w.client, sawReset)
			expectFarEnd(tb, w.backend, sawReset)
		},
		want: Stats{Reason: Canceled, ClientEnd: EndCut, BackendEnd: EndCut},
	}, {
		name: "idle_timeout",
		opts: Options{IdleTimeout: 50 * time.Millisecond},
		cut:  func(tb testing.TB, w *world) {},
		check: func(tb testing.TB, w *world) {
			expectFarEnd(tb, w.client, sawReset)
			expectFarEnd(tb, w.backend, sawReset)
		},
		want: Stats{Reason: IdleTimeout, ClientEnd: EndCut, BackendEnd: EndCut},
	}, {
		name: "half_close_timeout",
		opts: Options{HalfCloseTimeout: 50 * time.Millisecond},
		cut: func(tb testing.TB, w *world) {
			peerCloseWrite(tb, w.client)
			expectFarEnd(tb, w.backend, sawFIN)
		},
		check: func(tb testing.TB, w *world) { expectFarEndAfter(tb, w.client, sawReset, true) },
		want:  Stats{Reason: IdleTimeout, ClientEnd: EndClosed, BackendEnd: EndCut},
	}}
	for _, tr := range transports {
		for _, tc := range cases {
			t.Run(tr.name+"/"+tc.name, func(t *testing.T) {
				w := newWorld(t, abortCfg(tr, tc.opts))
				tc.cut(t, w)
				// Peers read while the relay ends: one that wrote to a peer
				// that does not read would wait for its idle timeout.
				tc.check(t, w)
				r := w.wait(t)
				if r.err != nil {
					t.Errorf("Relay error = %v, want nil", r.err)
				}
				got := r.st
				got.BytesIn, got.BytesOut = 0, 0
				if got != tc.want {
					t.Errorf("Stats = %+v, want %+v", r.st, tc.want)
				}
				if !got.Reason.Aborted() {
					t.Errorf("%s: Aborted() = false", got.Reason)
				}
			})
		}
	}
}

// TestRelayTLSTruncation: a TLS client that ends its stream with a bare
// FIN, without close_notify, has truncated it by TLS's rules. The backend
// sees a FIN all the same (see Relay) and its answer still reaches the
// client, and the relay says the client truncated.
func TestRelayTLSTruncation(t *testing.T) {
	for _, tr := range transports {
		if !tr.tls || tr.plainTLS {
			continue // without a Transport, the relay cannot tell (see Transport.eof)
		}
		t.Run(tr.name, func(t *testing.T) {
			w := newWorld(t, abortCfg(tr, Options{}))
			req, resp := []byte("request"), payload(100<<10)
			mustWrite(t, w.client, req)
			// The FIN without close_notify.
			if err := w.clientRaw.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, w.backend); !bytes.Equal(got, req) {
				t.Fatalf("backend got %q, want %q", got, req)
			}
			sent := goWrite(w.backend, resp, true)
			if got := readAll(t, w.client); !bytes.Equal(got, resp) {
				t.Fatalf("client got %d bytes, want %d", len(got), len(resp))
			}
			recvErr(t, sent, "backend write")
			checkResult(t, w.wait(t), Stats{BytesIn: int64(len(req)), BytesOut: int64(len(resp)),
				Reason: ClientTruncated, ClientEnd: EndTruncated, BackendEnd: EndClosed})
		})
	}
}

// TestRelayCleanEnds: clean ends on both sides are passed on as clean ends:
// a FIN to a plain peer, close_notify and a FIN to a TLS one.
func TestRelayCleanEnds(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			w := newWorld(t, abortCfg(tr, Options{}))
			peerCloseWrite(t, w.backend)
			want := sawFIN
			if tr.tls {
				want = sawCloseNotify
			}
			expectFarEnd(t, w.client, want)
			peerCloseWrite(t, w.client)
			expectFarEndAfter(t, w.backend, sawFIN, true)
			st := w.wait(t).st
			checkResult(t, w.wait(t), Stats{Reason: BackendClosed, ClientEnd: EndClosed, BackendEnd: EndClosed})
			if st.Reason.Aborted() {
				t.Errorf("%s: Aborted() = true", st.Reason)
			}
		})
	}
}

func TestAbortUnix(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A unix socket cannot be reset: it is closed, and its peer sees EOF.
	if err := Abort(c); err != nil {
		t.Fatal(err)
	}
	expectFarEnd(t, s, sawFIN)
}

// TestRelayPeerGoneAfterCleanEnd: a client that ends its stream cleanly and
// then drops its socket (an HTTP client that has its answer, say) cannot
// take the backend's end any more; nothing is lost, and the relay ends as
// a clean one, not as a reset, nor does it reset the backend.
func TestRelayPeerGoneAfterCleanEnd(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			w := newWorld(t, abortCfg(tr, Options{}))
			peerCloseWrite(t, w.client)
			expectFarEndAfter(t, w.backend, sawFIN, false)
			reset(t, w.clientRaw)
			// The client's RST must have arrived before the backend's end
			// is passed on: wait for the relay's socket to see it.
			for deadline := time.Now().Add(testTimeout); tcpState(w.relayClientRaw) != unix.BPF_TCP_CLOSE; {
				if time.Now().After(deadline) {
					t.Fatal("the client's reset did not arrive")
				}
				time.Sleep(time.Millisecond)
			}
			if err := w.backend.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			checkResult(t, w.wait(t), Stats{Reason: ClientClosed, ClientEnd: EndClosed, BackendEnd: EndClosed})
		})
	}
}
