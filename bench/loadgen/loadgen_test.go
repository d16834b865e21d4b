package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

// TestMain checks that runs leave no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every run in these tests.
const testTimeout = 30 * time.Second

// session runs one mode in the background with piped stdin and stdout,
// as the orchestrator does.
type session struct {
	t      *testing.T
	stdin  *io.PipeWriter
	lines  *bufio.Scanner
	stderr bytes.Buffer // read only after done
	done   chan error
}

// startSession starts run(ctx, cfg, ...) in a goroutine.
func startSession(t *testing.T, run func(context.Context, config, io.Reader, io.Writer, io.Writer) error, cfg config) *session {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &session{t: t, stdin: inW, lines: bufio.NewScanner(outR), done: make(chan error, 1)}
	go func() {
		err := run(t.Context(), cfg, inR, outW, &s.stderr)
		outW.Close()
		s.done <- err
	}()
	t.Cleanup(func() { inW.Close(); outR.Close() })
	return s
}

// expect reads the next stdout line, which must be `tag {json}`, into v.
func (s *session) expect(tag string, v any) {
	s.t.Helper()
	if !s.lines.Scan() {
		s.t.Fatalf("stdout ended before %s (err %v)", tag, s.lines.Err())
	}
	line := s.lines.Text()
	js, ok := strings.CutPrefix(line, tag+" ")
	if !ok {
		s.t.Fatalf("got line %q, want %s", line, tag)
	}
	dec := json.NewDecoder(strings.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.t.Fatalf("%s line %q: %v", tag, line, err)
	}
}

// wait checks that stdout has no more lines and the run returned nil.
func (s *session) wait() {
	s.t.Helper()
	if s.lines.Scan() {
		s.t.Errorf("unexpected stdout line %q", s.lines.Text())
	}
	if err := <-s.done; err != nil {
		s.t.Fatalf("run: %v", err)
	}
	s.t.Logf("stderr:\n%s", strings.ReplaceAll(s.stderr.String(), "\r", "\n"))
}

func TestWS(t *testing.T) {
	url, _ := startWSEcho(t, nil)
	cfg := config{
		mode: "ws", url: url,
		conns: 50, dialers: 8, dialTimeout: 5 * time.Second, timeout: testTimeout,
		active: 0.2, rate: 20, size: 64, duration: time.Second,
	}
	s := startSession(t, runWS, cfg)
	var ready openReport
	s.expect("READY", &ready)
	if ready.Opened != 50 || ready.Failed != 0 {
		t.Fatalf("READY %+v", ready)
	}
	if _, err := io.WriteString(s.stdin, "GO\n"); err != nil {
		t.Fatal(err)
	}
	var res wsReport
	s.expect("RESULT", &res)
	s.wait()
	t.Logf("RESULT %+v", res)
	if res.Conns != 50 || res.Active != 10 || res.Messages == 0 || res.Errors != 0 || res.Dropped != 0 {
		t.Errorf("RESULT %+v", res)
	}
	// 10 connections at 20/s for 1 s: 200 slots, some may be skipped.
	if res.Messages > 200 {
		t.Errorf("%d messages, want at most 200", res.Messages)
	}
	if !(0 < res.P50 && res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.Max) {
		t.Errorf("latencies out of order: %+v", res)
	}
}

// startWSEcho starts a wss:// echo server on loopback (HTTP/1.1 at /echo)
// with TLS settings tc (nil: Go's defaults, session tickets on) and
// returns its URL and a count of the upgrades it accepted.
func startWSEcho(t *testing.T, tc *tls.Config) (string, *atomic.Int64) {
	t.Helper()
	url, upgrades, _ := startWSEchoServer(t, tc)
	return url, upgrades
}

// startStoppableWSEcho is startWSEcho with Go's TLS defaults and a stop
// function that closes the listener and every connection, as a crashed
// server would.
func startStoppableWSEcho(t *testing.T) (string, *atomic.Int64, func()) {
	t.Helper()
	return startWSEchoServer(t, nil)
}

func startWSEchoServer(t *testing.T, tc *tls.Config) (string, *atomic.Int64, func()) {
	t.Helper()
	var upgrades atomic.Int64
	quit, quitNow := context.WithCancel(context.Background())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/echo" || r.ProtoMajor != 1 {
			http.Error(w, "want HTTP/1.1 /echo", http.StatusBadRequest)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		upgrades.Add(1)
		defer c.CloseNow()
		// Hijacked connections outlive the server's Close: stop ends them.
		defer context.AfterFunc(quit, func() { c.CloseNow() })()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, b); err != nil {
				return
			}
		}
	}))
	srv.TLS = tc
	srv.StartTLS()
	stop := sync.OnceFunc(func() {
		srv.Close()
		quitNow()
	})
	t.Cleanup(stop)
	return "wss" + strings.TrimPrefix(srv.URL, "https") + "/echo", &upgrades, stop
}

func TestHold(t *testing.T) {
	addr := startTLSEcho(t)
	s := startSession(t, runHold, config{
		mode: "hold", addr: addr, conns: 50, dialers: 8,
		dialTimeout: 5 * time.Second, timeout: testTimeout,
	})
	var ready openReport
	s.expect("READY", &ready)
	if ready.Opened != 50 || ready.Failed != 0 || len(ready.Errors) != 0 {
		t.Fatalf("READY %+v", ready)
	}
	s.stdin.Close() // the orchestrator has measured: release
	var done holdReport
	s.expect("DONE", &done)
	s.wait()
	if done.ClosedByPeer != 0 || done.TimedOut {
		t.Errorf("DONE %+v", done)
	}
}

// TestHoldDialFailures checks that failed dials are counted, not fatal.
func TestHoldDialFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more: connections are refused
	s := startSession(t, runHold, config{
		mode: "hold", addr: addr, conns: 5, dialers: 2,
		dialTimeout: 5 * time.Second, timeout: testTimeout,
	})
	var ready openReport
	s.expect("READY", &ready)
	if ready.Opened != 0 || ready.Failed != 5 || len(ready.Errors) == 0 || len(ready.Errors) > maxErrors {
		t.Fatalf("READY %+v", ready)
	}
	s.stdin.Close()
	var done holdReport
	s.expect("DONE", &done)
	s.wait()
}

// TestWSUpgradeTimeout checks that -dial-timeout bounds the WebSocket
// upgrade too: the server completes TLS handshakes but never answers.
func TestWSUpgradeTimeout(t *testing.T) {
	addr := startTLSServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	s := startSession(t, runWS, config{
		mode: "ws", url: "wss://" + addr + "/echo", conns: 3, dialers: 3,
		dialTimeout: 200 * time.Millisecond, timeout: testTimeout,
		active: 1, rate: 1, size: 64, duration: time.Millisecond,
	})
	var ready openReport
	s.expect("READY", &ready)
	if ready.Opened != 0 || ready.Failed != 3 || len(ready.Errors) == 0 {
		t.Fatalf("READY %+v", ready)
	}
	s.stdin.Close() // EOF instead of GO starts the echo phase too
	var res wsReport
	s.expect("RESULT", &res)
	s.wait()
	if res != (wsReport{Seconds: res.Seconds}) {
		t.Errorf("RESULT %+v", res)
	}
}

// startTLSEcho starts a TLS echo server on loopback and returns its address.
func startTLSEcho(t *testing.T) string {
	t.Helper()
	return startTLSServer(t, func(c net.Conn) { io.Copy(c, c) })
}

// startTLSServer starts a TLS server on loopback that runs serve on each
// connection, and returns its address.
func startTLSServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{testCert(t)}})
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, serve)
}

// serveOn accepts on ln until the test ends and runs serve on each
// connection in a goroutine, closing it afterwards; it returns ln's
// address.
func serveOn(t *testing.T, ln net.Listener, serve func(net.Conn)) string {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return ln.Addr().String()
}

// testCert returns a self-signed ECDSA certificate for localhost.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestParseFlags(t *testing.T) {
	good := [][]string{
		{"-mode", "hold", "-addr", "127.0.0.1:8443", "-conns", "10"},
		{"-mode", "ws", "-url", "wss://127.0.0.1:8443/echo", "-active", "0.1", "-src", "127.0.0.2-127.0.0.4"},
		{"-mode", "flood", "-addr", "127.0.0.1:8443", "-conns", "64", "-duration", "5s"},
		{"-mode", "probe", "-addr", "127.0.0.1:8443", "-interval", "20ms", "-path", "/healthz"},
		{"-mode", "conn", "-addr", "127.0.0.1:8443", "-conns", "64", "-resume", "-duration", "5s"},
		{"-mode", "storm", "-url", "wss://127.0.0.1:8443/echo", "-conns", "1000", "-dial-timeout", "30s"},
		{"-mode", "stay", "-url", "wss://127.0.0.1:8443/echo", "-conns", "100", "-rate", "10"},
	}
	for _, args := range good {
		if _, err := parseFlags(args, io.Discard); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
	bad := [][]string{
		{},
		{"-mode", "hold"},
		{"-mode", "hold", "-addr", "127.0.0.1:8443", "-conns", "0"},
		{"-mode", "ws", "-url", "https://127.0.0.1:8443/echo"},
		{"-mode", "ws", "-url", "wss://127.0.0.1:8443/echo", "-active", "2"},
		{"-mode", "ws", "-url", "wss://127.0.0.1:8443/echo", "-size", "0"},
		{"-mode", "hold", "-addr", "127.0.0.1:8443", "-src", "127.0.0.9-127.0.0.2"},
		{"-mode", "hold", "-addr", "127.0.0.1:8443", "extra"},
		{"-mode", "flood"},
		{"-mode", "flood", "-addr", "127.0.0.1:8443", "-duration", "0s"},
		{"-mode", "flood", "-addr", "127.0.0.1:8443", "-duration", "90s"}, // past -timeout
		{"-mode", "probe", "-addr", "127.0.0.1:8443", "-interval", "0s"},
		{"-mode", "probe", "-addr", "127.0.0.1:8443", "-path", "healthz"},
		{"-mode", "probe", "-addr", "127.0.0.1:8443", "-path", "/ HTTP/1.0\r\n"},
		{"-mode", "attack", "-addr", "127.0.0.1:8443"},
		{"-mode", "conn"},
		{"-mode", "conn", "-addr", "127.0.0.1:8443", "-path", "x"},
		{"-mode", "conn", "-addr", "127.0.0.1:8443", "-duration", "90s"}, // past -timeout
		{"-mode", "storm", "-addr", "127.0.0.1:8443"},
		{"-mode", "storm", "-url", "wss://127.0.0.1:8443/echo", "-conns", "0"},
		{"-mode", "stay", "-url", "https://127.0.0.1:8443/echo"},
		{"-mode", "stay", "-url", "wss://127.0.0.1:8443/echo", "-rate", "0"},
		{"-mode", "stay", "-url", "wss://127.0.0.1:8443/echo", "-size", "0"},
	}
	for _, args := range bad {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
