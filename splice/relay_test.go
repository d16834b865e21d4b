package splice

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every blocking step of a test. It is a safety net that
// turns a hang into a failure, never a means of synchronisation.
const testTimeout = 5 * time.Second

const testServerName = "relay.test"

// tcpPair returns both ends of a fresh loopback TCP connection: the dialled
// end first, the accepted end second. Both are closed on cleanup.
func tcpPair(tb testing.TB) (dialed, accepted *net.TCPConn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type acceptResult struct {
		c   net.Conn
		err error
	}
	accepts := make(chan acceptResult, 1)
	go func() {
		c, err := ln.Accept()
		accepts <- acceptResult{c, err}
	}()
	d, err := net.DialTimeout("tcp", ln.Addr().String(), testTimeout)
	if err != nil {
		tb.Fatal(err)
	}
	a := <-accepts
	if a.err != nil {
		d.Close()
		tb.Fatal(a.err)
	}
	dialed, accepted = d.(*net.TCPConn), a.c.(*net.TCPConn)
	tb.Cleanup(func() {
		dialed.Close()
		accepted.Close()
	})
	return dialed, accepted
}

// testCert makes a self-signed ECDSA P-256 certificate for testServerName
// and a pool that trusts it.
func testCert(tb testing.TB) (tls.Certificate, *x509.CertPool) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: testServerName},
		DNSNames:              []string{testServerName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}

// tlsEnds is a loopback TCP connection with TLS on top, handshake done. The
// raw TCP conns are kept explicitly, never recovered from the TLS conns.
type tlsEnds struct {
	client, server       *tls.Conn
	clientRaw, serverRaw *net.TCPConn
}

// tlsPair connects a TLS client and server over loopback TCP. With
// transport, the server runs over a Transport, as a relay's client end
// does in sluice. With wrapClient set, the client's TLS runs over
// wrapClient(its TCP conn).
func tlsPair(tb testing.TB, transport bool, wrapClient func(net.Conn) net.Conn) tlsEnds {
	tb.Helper()
	cert, roots := testCert(tb)
	craw, sraw := tcpPair(tb)
	var under net.Conn = sraw
	if transport {
		under = NewTransport(sraw, nil)
	}
	var clientUnder net.Conn = craw
	if wrapClient != nil {
		clientUnder = wrapClient(craw)
	}
	e := tlsEnds{
		client:    tls.Client(clientUnder, &tls.Config{RootCAs: roots, ServerName: testServerName}),
		server:    tls.Server(under, &tls.Config{Certificates: []tls.Certificate{cert}}),
		clientRaw: craw,
		serverRaw: sraw,
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	serverErr := make(chan error, 1)
	go func() { serverErr <- e.server.HandshakeContext(ctx) }()
	if err := e.client.HandshakeContext(ctx); err != nil {
		tb.Fatalf("client handshake: %v", err)
	}
	if err := <-serverErr; err != nil {
		tb.Fatalf("server handshake: %v", err)
	}
	return e
}

// world is the topology under test:
//
//	client <-TCP/TLS-> [client end | Relay | backend end] <-TCP-> backend
//
// client and backend are the test's peers; Relay runs in its own goroutine
// and reports on done.
type world struct {
	client    net.Conn     // the test's client: *net.TCPConn or *tls.Conn
	clientRaw *net.TCPConn // the TCP conn under client (client itself for TCP)
	backend   *net.TCPConn // the test's backend
	// relayClientRaw is the relay's client-side socket (under its TLS conn
	// for TLS), for tests that look at what the relay left unread.
	relayClientRaw *net.TCPConn

	parker *Parker // nil unless the world parks
	cancel context.CancelFunc
	done   chan relayResult
	result *relayResult
}

type relayResult struct {
	st  Stats
	err error
}

type worldConfig struct {
	tls      bool // TLS between the test's client and the relay
	plainTLS bool // the relay's TLS conn without a Transport beneath
	park     bool // a Parker parking after a millisecond
	opts     Options
	// wrapBackend, if set, wraps the relay's backend conn.
	wrapBackend func(net.Conn) net.Conn
	// wrapClient, if set, wraps the TCP conn under the test client's TLS.
	wrapClient func(net.Conn) net.Conn
}

func newWorld(tb testing.TB, cfg worldConfig) *world {
	tb.Helper()
	w := &world{done: make(chan relayResult, 1)}
	var clientEnd net.Conn
	if cfg.tls {
		e := tlsPair(tb, !cfg.plainTLS, cfg.wrapClient)
		w.client, w.clientRaw, clientEnd = e.client, e.clientRaw, e.server
		w.relayClientRaw = e.serverRaw
	} else {
		w.clientRaw, w.relayClientRaw = tcpPair(tb)
		w.client, clientEnd = w.clientRaw, w.relayClientRaw
	}
	backendEnd, backendPeer := tcpPair(tb)
	w.backend = backendPeer
	var backend net.Conn = backendEnd
	if cfg.wrapBackend != nil {
		backend = cfg.wrapBackend(backend)
	}

	if cfg.park {
		p, err := NewParker()
		if err != nil {
			tb.Fatalf("NewParker: %v", err)
		}
		tb.Cleanup(func() { p.Close() })
		cfg.opts.Parker, cfg.opts.ParkAfter = p, time.Millisecond
		w.parker = p
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		st, err := Relay(ctx, clientEnd, backend, cfg.opts)
		w.done <- relayResult{st, err}
	}()
	tb.Cleanup(func() {
		// Normally the test has already waited; this only reaps the relay
		// of a test that failed half-way.
		cancel()
		w.client.Close()
		w.backend.Close()
		if w.result == nil {
			select {
			case r := <-w.done:
				w.result = &r
			case <-time.After(testTimeout):
				tb.Error("Relay did not return after cleanup")
			}
		}
	})
	return w
}

// wait returns Relay's result, failing the test if it takes testTimeout.
func (w *world) wait(tb testing.TB) relayResult {
	tb.Helper()
	if w.result != nil {
		return *w.result
	}
	select {
	case r := <-w.done:
		w.result = &r
		return r
	case <-time.After(testTimeout):
		tb.Fatal("Relay did not return")
		panic("unreachable")
	}
}

// returned reports, without blocking, whether Relay has returned.
func (w *world) returned() bool {
	if w.result != nil {
		return true
	}
	select {
	case r := <-w.done:
		w.result = &r
		return true
	default:
		return false
	}
}

// peerCloseWrite half-closes one of the test's own conns: close_notify and
// then a TCP FIN for TLS, a FIN for TCP.
func peerCloseWrite(tb testing.TB, c net.Conn) {
	tb.Helper()
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			tb.Fatalf("tls CloseWrite: %v", err)
		}
		c = tc.NetConn()
	}
	if err := c.(closeWriter).CloseWrite(); err != nil {
		tb.Fatalf("CloseWrite: %v", err)
	}
}

func mustWrite(tb testing.TB, c net.Conn, p []byte) {
	tb.Helper()
	c.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := c.Write(p); err != nil {
		tb.Fatalf("write: %v", err)
	}
}

// goWrite writes p to c in a named goroutine and, if closeWrite, half-closes
// c (plain TCP only). The result arrives on the returned channel.
func goWrite(c net.Conn, p []byte, closeWrite bool) <-chan error {
	errc := make(chan error, 1)
	go writeThenClose(errc, c, p, closeWrite)
	return errc
}

func writeThenClose(errc chan<- error, c net.Conn, p []byte, closeWrite bool) {
	c.SetWriteDeadline(time.Now().Add(testTimeout))
	_, err := c.Write(p)
	if err == nil && closeWrite {
		err = c.(*net.TCPConn).CloseWrite()
	}
	errc <- err
}

func recvErr(tb testing.TB, errc <-chan error, what string) {
	tb.Helper()
	select {
	case err := <-errc:
		if err != nil {
			tb.Fatalf("%s: %v", what, err)
		}
	case <-time.After(testTimeout):
		tb.Fatalf("%s: timed out", what)
	}
}

// readAll reads c to a clean EOF (for TLS: close_notify).
func readAll(tb testing.TB, c net.Conn) []byte {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	b, err := io.ReadAll(c)
	if err != nil {
		tb.Fatalf("read to EOF: %v (after %d bytes)", err, len(b))
	}
	return b
}

func readFull(tb testing.TB, c net.Conn, n int) []byte {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	b := make([]byte, n)
	if got, err := io.ReadFull(c, b); err != nil {
		tb.Fatalf("read %d bytes: %v (after %d)", n, err, got)
	}
	return b
}

// expectEnd reads c until it fails and checks that the failure is the
// connection ending (EOF, reset, ...), not the test's own deadline.
func expectEnd(tb testing.TB, c net.Conn) {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	_, err := io.Copy(io.Discard, c)
	if isTimeout(err) {
		tb.Fatalf("conn still open: %v", err)
	}
}

// expectEOF checks that the next read on c is a clean EOF.
func expectEOF(tb testing.TB, c net.Conn) {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	var b [1]byte
	if n, err := c.Read(b[:]); n != 0 || err != io.EOF {
		tb.Fatalf("read = %d, %v; want 0, EOF", n, err)
	}
}

func payload(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func checkResult(tb testing.TB, r relayResult, want Stats) {
	tb.Helper()
	if r.err != nil {
		tb.Errorf("Relay error = %v, want nil", r.err)
	}
	if !sameStats(r.st, want) {
		tb.Errorf("Stats = %+v, want %+v", r.st, want)
	}
}

// sameStats compares got with want; the ends only where want says what
// they must be.
func sameStats(got, want Stats) bool {
	if want.ClientEnd == "" {
		got.ClientEnd = ""
	}
	if want.BackendEnd == "" {
		got.BackendEnd = ""
	}
	return got == want
}

// transport is one way the relay's two ends can look, and so one path
// through it.
type transport struct {
	name     string
	tls      bool // TLS between the test's client and the relay
	plainTLS bool // the relay's TLS conn sits on the bare socket, not a Transport: blocking reads
	noSplice bool // copy between two sockets instead of splicing
	park     bool // a Parker that parks a direction after a millisecond of quiet
}

var transports = []transport{
	{name: "splice"},
	{name: "copy", noSplice: true},
	{name: "tls", tls: true},
	{name: "tls_blocking", tls: true, plainTLS: true},
	{name: "splice_parked", park: true},
	{name: "copy_parked", noSplice: true, park: true},
	{name: "tls_parked", tls: true, park: true},
}

// cfg is a world configuration for this transport with opts.
func (tr transport) cfg(opts Options) worldConfig {
	opts.NoSplice = tr.noSplice
	return worldConfig{tls: tr.tls, plainTLS: tr.plainTLS, park: tr.park, opts: opts}
}

// TestRelayEcho sends payloads through the relay to an echoing backend while
// reading the echo concurrently, so both directions carry data at once.
func TestRelayEcho(t *testing.T) {
	sizes := []struct {
		name string
		n    int
	}{
		{"1B", 1},
		{"1000B", 1000},
		{"32KiB", 32 << 10},
		{"1MiB+7", 1<<20 + 7},
	}
	for _, tr := range transports {
		for _, sz := range sizes {
			t.Run(tr.name+"/"+sz.name, func(t *testing.T) {
				w := newWorld(t, tr.cfg(Options{}))
				echoed := make(chan error, 1)
				go echo(echoed, w.backend)

				data := payload(sz.n)
				sent := make(chan error, 1)
				go func() {
					w.client.SetWriteDeadline(time.Now().Add(testTimeout))
					_, err := w.client.Write(data)
					sent <- err
				}()
				got := readFull(t, w.client, len(data))
				recvErr(t, sent, "client write")
				if !bytes.Equal(got, data) {
					t.Fatalf("echo differs: got %d bytes, want %d", len(got), len(data))
				}
				// Close in order: client FIN → backend EOF → backend FIN.
				peerCloseWrite(t, w.client)
				recvErr(t, echoed, "backend echo")
				if rest := readAll(t, w.client); len(rest) != 0 {
					t.Fatalf("%d unexpected bytes after echo", len(rest))
				}
				checkResult(t, w.wait(t), Stats{BytesIn: int64(sz.n), BytesOut: int64(sz.n), Reason: ClientClosed})
			})
		}
	}
}

// echo copies c back to itself until EOF, then half-closes it.
func echo(errc chan<- error, c *net.TCPConn) {
	c.SetDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 16<<10)
	_, err := io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf)
	if err == nil {
		err = c.CloseWrite()
	}
	errc <- err
}

// TestRelayConcurrentBothWays moves 1 MiB each way at the same time, with
// different contents, and checks the byte counters per direction.
func TestRelayConcurrentBothWays(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			w := newWorld(t, tr.cfg(Options{}))
			up, down := payload(1<<20), payload(1<<20+13)
			backendSent := goWrite(w.backend, down, true)
			clientSent := make(chan error, 1)
			go func() {
				w.client.SetWriteDeadline(time.Now().Add(testTimeout))
				_, err := w.client.Write(up)
				clientSent <- err
			}()
			backendGot := make(chan []byte, 1)
			go func() {
				w.backend.SetReadDeadline(time.Now().Add(testTimeout))
				b, _ := io.ReadAll(w.backend) // checked by comparing below
				backendGot <- b
			}()
			if got := readAll(t, w.client); !bytes.Equal(got, down) {
				t.Errorf("client got %d bytes, want %d (equal: false)", len(got), len(down))
			}
			recvErr(t, clientSent, "client write")
			recvErr(t, backendSent, "backend write")
			peerCloseWrite(t, w.client)
			if got := <-backendGot; !bytes.Equal(got, up) {
				t.Errorf("backend got %d bytes, want %d (equal: false)", len(got), len(up))
			}
			// The backend finished first: its FIN was read before the client's.
			checkResult(t, w.wait(t), Stats{BytesIn: int64(len(up)), BytesOut: int64(len(down)), Reason: BackendClosed})
		})
	}
}

// TestRelayClientHalfClose: the client sends a request and half-closes; the
// backend must see EOF and can still send a long response, which the client
// must receive in full. Over TLS the client's close_notify+FIN becomes a FIN
// to the backend.
func TestRelayClientHalfClose(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			w := newWorld(t, tr.cfg(Options{}))
			req, resp := []byte("GET / HTTP/1.0\r\n\r\n"), payload(300<<10)

			mustWrite(t, w.client, req)
			peerCloseWrite(t, w.client)
			// EOF here proves the half-close was propagated; without it
			// this read hits the test deadline.
			if got := readAll(t, w.backend); !bytes.Equal(got, req) {
				t.Fatalf("backend got %q, want %q", got, req)
			}

			sent := goWrite(w.backend, resp, false)
			if got := readFull(t, w.client, len(resp)); !bytes.Equal(got, resp) {
				t.Fatal("response differs")
			}
			recvErr(t, sent, "backend write")
			if w.returned() {
				t.Fatal("Relay returned while the backend was still open")
			}
			w.backend.Close()
			if rest := readAll(t, w.client); len(rest) != 0 {
				t.Fatalf("%d unexpected bytes after response", len(rest))
			}
			checkResult(t, w.wait(t), Stats{BytesIn: int64(len(req)), BytesOut: int64(len(resp)), Reason: ClientClosed})
		})
	}
}

// TestRelayBackendHalfClose: the backend sends a greeting and half-closes;
// the client must see the end of stream (over TLS: close_notify, so a clean
// io.EOF, and a TCP FIN under it) and can still send to the backend.
func TestRelayBackendHalfClose(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			w := newWorld(t, tr.cfg(Options{}))
			greeting, req := payload(300<<10), []byte("QUIT\r\n")

			sent := goWrite(w.backend, greeting, true)
			// readAll fails on anything but io.EOF, so over TLS this also
			// proves close_notify arrived (a bare FIN gives
			// io.ErrUnexpectedEOF).
			if got := readAll(t, w.client); !bytes.Equal(got, greeting) {
				t.Fatalf("client got %d bytes, want %d", len(got), len(greeting))
			}
			recvErr(t, sent, "backend write")
			if tr.tls {
				// close_notify alone is not enough: the TCP beneath must
				// carry a FIN too.
				expectEOF(t, w.clientRaw)
			}

			mustWrite(t, w.client, req)
			if got := readFull(t, w.backend, len(req)); !bytes.Equal(got, req) {
				t.Fatalf("backend got %q, want %q", got, req)
			}
			if w.returned() {
				t.Fatal("Relay returned while the client was still open")
			}
			w.client.Close()
			if rest := readAll(t, w.backend); len(rest) != 0 {
				t.Fatalf("%d unexpected bytes after request", len(rest))
			}
			checkResult(t, w.wait(t), Stats{BytesIn: int64(len(req)), BytesOut: int64(len(greeting)), Reason: BackendClosed})
		})
	}
}

func TestRelayIdleTimeout(t *testing.T) {
	w := newWorld(t, worldConfig{opts: Options{IdleTimeout: 100 * time.Millisecond}})
	checkResult(t, w.wait(t), Stats{Reason: IdleTimeout})
	expectEnd(t, w.client)
	expectEnd(t, w.backend)
}

// Pacing for TestRelayIdleCountsBothDirections.
const (
	oneWayIdle   = 200 * time.Millisecond
	oneWayEvery  = 50 * time.Millisecond
	oneWayTicks  = 12 // 600 ms: three idle timeouts
	oneWayChunk  = 10
	oneWayTries  = 3
	oneWayMaxGap = oneWayIdle * 3 / 4
)

// TestRelayIdleCountsBothDirections: traffic in one direction only must keep
// the relay alive, although the other direction has been silent for several
// idle timeouts.
//
// The test depends on wall-clock pacing, so an overloaded machine can stall
// the writer for longer than the idle timeout, and then the relay is right to
// time out. The writer measures its own gaps: a timeout after a run without
// a long gap is a failure; after a long gap the run is inconclusive and is
// retried.
func TestRelayIdleCountsBothDirections(t *testing.T) {
	for try := 1; ; try++ {
		alive, gap := idleOneWay(t)
		switch {
		case alive:
			return
		case gap < oneWayMaxGap:
			t.Fatalf("relay hit the idle timeout although the backend never paused longer than %v", gap)
		case try == oneWayTries:
			t.Skipf("inconclusive %d times: the test's writer stalled up to %v (machine overloaded)", try, gap)
		}
		t.Logf("try %d inconclusive: the test's writer stalled %v; retrying", try, gap)
	}
}

// idleOneWay runs one attempt: it reports whether the relay outlived the
// one-way traffic, and the longest pause seen either by the writer between
// its writes or by the client between arrivals (a relay starved of CPU on
// a loaded machine shows up there, not in the writer's gaps).
func idleOneWay(t *testing.T) (alive bool, maxGap time.Duration) {
	t.Helper()
	w := newWorld(t, worldConfig{opts: Options{IdleTimeout: oneWayIdle}})
	trickled := make(chan trickleResult, 1)
	start := time.Now()
	go trickle(trickled, w.backend, start, oneWayEvery, oneWayTicks, oneWayChunk)

	w.client.SetReadDeadline(time.Now().Add(testTimeout))
	var rerr error
	prev, readGap := start, time.Duration(0)
	for got := 0; got < oneWayTicks*oneWayChunk && rerr == nil; {
		var n int
		n, rerr = w.client.Read(make([]byte, oneWayTicks*oneWayChunk-got))
		got += n
		now := time.Now()
		readGap, prev = max(readGap, now.Sub(prev)), now
	}
	var tr trickleResult
	select {
	case tr = <-trickled:
	case <-time.After(testTimeout):
		t.Fatal("backend trickle did not finish")
	}
	maxGap = max(tr.maxGap, readGap)
	if rerr != nil {
		if isTimeout(rerr) {
			t.Fatalf("client read: %v", rerr)
		}
		r := w.wait(t)
		if r.st.Reason != IdleTimeout {
			t.Fatalf("Relay ended early: %+v, %v", r.st, r.err)
		}
		return false, maxGap
	}
	if tr.err != nil {
		t.Fatalf("backend trickle: %v", tr.err)
	}
	if w.returned() {
		return false, maxGap
	}
	// The silent direction must still work.
	mustWrite(t, w.client, []byte("ping"))
	w.backend.SetReadDeadline(time.Now().Add(testTimeout))
	ping := make([]byte, 4)
	if _, err := io.ReadFull(w.backend, ping); err != nil {
		// The relay ended between the last chunk and the ping: only an
		// idle timeout may do that, and only after a stall.
		r := w.wait(t)
		if r.st.Reason != IdleTimeout {
			t.Fatalf("backend read of the ping: %v; Relay = %+v, %v", err, r.st, r.err)
		}
		return false, max(maxGap, time.Since(prev))
	}
	if string(ping) != "ping" {
		t.Fatalf("backend got %q", ping)
	}
	w.client.Close()
	w.backend.Close()
	r := w.wait(t)
	if r.err != nil || r.st.BytesIn != 4 || r.st.BytesOut != oneWayTicks*oneWayChunk {
		t.Fatalf("Relay = %+v, %v; want 4 bytes in, %d out, nil error", r.st, r.err, oneWayTicks*oneWayChunk)
	}
	return true, maxGap
}

type trickleResult struct {
	maxGap time.Duration // longest time between two writes (or start and the first)
	err    error
}

// trickle writes a chunk to c on every tick. The ticker paces the writes; it
// does not synchronise anything.
func trickle(done chan<- trickleResult, c net.Conn, start time.Time, every time.Duration, ticks, chunk int) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	b := bytes.Repeat([]byte{'x'}, chunk)
	var res trickleResult
	prev := start
	for range ticks {
		<-tk.C
		res.maxGap = max(res.maxGap, time.Since(prev))
		c.SetWriteDeadline(time.Now().Add(testTimeout))
		if _, res.err = c.Write(b); res.err != nil {
			break
		}
		prev = time.Now()
	}
	done <- res
}

// TestRelayHalfCloseTimeout: after the client half-closes, a backend that
// neither answers nor closes is cut off after HalfCloseTimeout, not after
// the (much longer) IdleTimeout. The test deadline is the assertion.
func TestRelayHalfCloseTimeout(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			w := newWorld(t, tr.cfg(Options{
				IdleTimeout:      time.Minute,
				HalfCloseTimeout: 100 * time.Millisecond,
			}))
			peerCloseWrite(t, w.client)
			if got := readAll(t, w.backend); len(got) != 0 {
				t.Fatalf("backend got %d bytes", len(got))
			}
			checkResult(t, w.wait(t), Stats{Reason: IdleTimeout})
			expectEnd(t, w.client)
		})
	}
}

// TestRelayBackendReset: the backend resets (SO_LINGER 0) mid-stream. The
// relay must end promptly, the client must see its conn end, and a reset is
// an ordinary ending: err is nil and the reason is BackendReset (a reset is
// benign, so it never becomes BackendError).
func TestRelayBackendReset(t *testing.T) {
	t.Run("client_sending", func(t *testing.T) {
		w := newWorld(t, worldConfig{})
		// The client floods until the relay closes it.
		flooded := make(chan error, 1)
		go flood(flooded, w.client)
		readFull(t, w.backend, 256<<10)
		reset(t, w.backend)

		r := w.wait(t)
		t.Logf("observed: %+v err=%v", r.st, r.err)
		if r.err != nil || r.st.Reason != BackendReset {
			t.Errorf("Relay = %v, %v; want %v, nil", r.st.Reason, r.err, BackendReset)
		}
		recvErr(t, flooded, "client flood")
		expectEnd(t, w.client)
	})
	t.Run("backend_sending", func(t *testing.T) {
		w := newWorld(t, worldConfig{})
		flooded := make(chan error, 1)
		go flood(flooded, w.backend)
		readFull(t, w.client, 256<<10)
		reset(t, w.backend)
		// Keep reading, so the relay is never stuck writing to us.
		expectEnd(t, w.client)

		r := w.wait(t)
		t.Logf("observed: %+v err=%v", r.st, r.err)
		if r.err != nil || r.st.Reason != BackendReset {
			t.Errorf("Relay = %v, %v; want %v, nil", r.st.Reason, r.err, BackendReset)
		}
		recvErr(t, flooded, "backend flood")
	})
}

// flood writes to c until a write fails, and reports nil if it failed
// because the connection ended (rather than the test deadline).
func flood(errc chan<- error, c net.Conn) {
	b := make([]byte, 32<<10)
	c.SetWriteDeadline(time.Now().Add(testTimeout))
	for {
		if _, err := c.Write(b); err != nil {
			if isTimeout(err) {
				errc <- err
			} else {
				errc <- nil
			}
			return
		}
	}
}

// reset closes c with SO_LINGER 0, which sends a RST instead of a FIN.
func reset(tb testing.TB, c *net.TCPConn) {
	tb.Helper()
	if err := c.SetLinger(0); err != nil {
		tb.Fatal(err)
	}
	c.Close()
}

func TestRelayCancel(t *testing.T) {
	w := newWorld(t, worldConfig{})
	// One byte each way, so the relay is known to be running.
	mustWrite(t, w.client, []byte{1})
	readFull(t, w.backend, 1)
	mustWrite(t, w.backend, []byte{2})
	readFull(t, w.client, 1)

	w.cancel()
	checkResult(t, w.wait(t), Stats{BytesIn: 1, BytesOut: 1, Reason: Canceled})
	expectEnd(t, w.client)
	expectEnd(t, w.backend)
}

// plainConn hides every method but net.Conn's, CloseWrite in particular.
type plainConn struct{ net.Conn }

// TestRelayBackendWithoutCloseWrite: a backend conn that cannot half-close
// is fully closed when the client sends EOF, and the relay still ends.
func TestRelayBackendWithoutCloseWrite(t *testing.T) {
	w := newWorld(t, worldConfig{wrapBackend: func(c net.Conn) net.Conn { return plainConn{c} }})
	mustWrite(t, w.client, []byte("bye"))
	peerCloseWrite(t, w.client)
	if got := readAll(t, w.backend); string(got) != "bye" {
		t.Fatalf("backend got %q", got)
	}
	checkResult(t, w.wait(t), Stats{BytesIn: 3, Reason: ClientClosed})
	expectEnd(t, w.client)
}

func TestBufferPool(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		want int
	}{
		{"zero", 0, DefaultBufferSize},
		{"negative", -1, DefaultBufferSize},
		{"1KiB", 1 << 10, 1 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &BufferPool{Size: tc.size}
			b := p.Get()
			if len(*b) != tc.want {
				t.Fatalf("Get: len %d, want %d", len(*b), tc.want)
			}
			p.Put(b)
			foreign := make([]byte, tc.want+1)
			p.Put(&foreign)
			for range 100 {
				b := p.Get()
				if len(*b) != tc.want {
					t.Fatalf("Get after a foreign Put: len %d, want %d", len(*b), tc.want)
				}
				defer p.Put(b) // keep them out, so every Get sees the pool
			}
		})
	}
}

// TestRelaySmallBuffers moves large and small writes through a relay whose
// buffers are far smaller than the data, on every path, and checks every
// byte.
func TestRelaySmallBuffers(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			pool := &BufferPool{Size: 512}
			w := newWorld(t, tr.cfg(Options{Buffers: pool}))
			var want bytes.Buffer
			want.Write(bytes.Repeat([]byte("large "), 20_000))
			for i := range 200 {
				fmt.Fprintf(&want, "small %d\n", i)
			}
			want.Write(bytes.Repeat([]byte("large again "), 10_000))
			go func() {
				w.client.Write(want.Bytes())
				peerCloseWrite(t, w.client)
			}()
			got := readAll(t, w.backend)
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("backend got %d bytes, want %d", len(got), want.Len())
			}
			w.backend.Close()
			if r := w.wait(t); r.st.BytesIn != int64(want.Len()) {
				t.Fatalf("BytesIn %d, want %d", r.st.BytesIn, want.Len())
			}
			if n := pool.Outstanding(); n != 0 {
				t.Fatalf("%d buffers still out of the pool", n)
			}
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	for _, tc := range []struct {
		name            string
		opts            Options
		idle, halfClose time.Duration
	}{
		{"zero", Options{}, DefaultIdleTimeout, DefaultHalfCloseTimeout},
		{"set", Options{IdleTimeout: time.Second, HalfCloseTimeout: 2 * time.Second}, time.Second, 2 * time.Second},
		{"disabled", Options{IdleTimeout: -1, HalfCloseTimeout: -1}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.opts.idleTimeout(); got != tc.idle {
				t.Errorf("idleTimeout = %v, want %v", got, tc.idle)
			}
			if got := tc.opts.halfCloseTimeout(); got != tc.halfClose {
				t.Errorf("halfCloseTimeout = %v, want %v", got, tc.halfClose)
			}
		})
	}
}

func TestIsBenign(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, true},
		{io.EOF, true},
		{net.ErrClosed, true},
		{&net.OpError{Op: "read", Err: errors.New("boom")}, false},
		{errors.New("boom"), false},
	} {
		if got := IsBenign(tc.err); got != tc.want {
			t.Errorf("IsBenign(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
