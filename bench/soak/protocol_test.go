package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testPID = 4242

// startBackend runs an in-process backend on loopback; its verdicts come on
// the returned channel.
func startBackend(t *testing.T, cfg *tls.Config) (string, <-chan verdict) {
	t.Helper()
	ln, err := listenAborting(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	verdicts := make(chan verdict, 256)
	srv := &backendServer{TLS: cfg, Timeout: 10 * time.Second, PID: testPID, Emit: func(v verdict) { verdicts <- v }}
	served := make(chan error, 1)
	go serveBackend(srv, ln, served)
	t.Cleanup(func() {
		ln.Close()
		if err := <-served; err != nil {
			t.Error(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Wait(ctx); err != nil {
			t.Error(err)
		}
	})
	return ln.Addr().String(), verdicts
}

func testCerts(t *testing.T) (server *tls.Config, client *tls.Config) {
	t.Helper()
	c, err := newTestCert("backend.soak")
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c.pair}},
		&tls.Config{RootCAs: c.pool, ServerName: "backend.soak"}
}

func TestStreamsVerify(t *testing.T) {
	srvTLS, cliTLS := testCerts(t)
	sizes := [][2]int64{{0, 0}, {1, 0}, {0, 100_000}, {70_000, 300_000}, {1 << 20, 3}}
	targets := []struct {
		name string
		tls  bool
		ws   bool
	}{{"plain", false, false}, {"tls", true, false}, {"ws", true, true}, {"ws-plain", false, true}}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			var scfg, ccfg *tls.Config
			if tg.tls {
				scfg, ccfg = srvTLS, cliTLS
			}
			addr, verdicts := startBackend(t, scfg)
			tgt := target{addr: addr, tls: ccfg, ws: tg.ws}
			id := uint64(0)
			for m := range numModes {
				for _, sz := range sizes {
					id++
					h := header{ID: id, Mode: m, Up: sz[0], Down: sz[1], Seed: id * 7919}
					res := runClient(context.Background(), tgt, kindPlain, h, 10*time.Second)
					if res.Status != statusOK || res.Instance != testPID || res.DownGot != sz[1] || res.UpSent != sz[0] {
						t.Fatalf("%v %v: client %+v", m, sz, res)
					}
					v := <-verdicts
					if v.ID != id || v.Status != statusOK || v.Got != sz[0] || v.Want != sz[0] || v.PID != testPID {
						t.Fatalf("%v %v: backend %+v", m, sz, v)
					}
				}
			}
		})
	}
}

// faultyProxy relays client ↔ backend, but ends the backend → client
// direction after cut bytes the way its end says: "fin" (a clean but
// short stream), "rst", or "flip" (one byte changed, then the rest).
type faultyProxy struct {
	backend string
	cut     int64
	end     string
	wg      sync.WaitGroup
}

func (p *faultyProxy) start(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.wg.Add(1)
	go p.accept(ln)
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return ln.Addr().String()
}

func (p *faultyProxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.backend)
		if err != nil {
			c.Close()
			continue
		}
		p.wg.Add(2)
		upDone := make(chan struct{})
		go p.up(c.(*net.TCPConn), b.(*net.TCPConn), upDone)
		go p.down(c.(*net.TCPConn), b.(*net.TCPConn), upDone)
	}
}

func (p *faultyProxy) up(c, b *net.TCPConn, done chan<- struct{}) {
	defer p.wg.Done()
	defer close(done)
	io.Copy(b, c)
	b.CloseWrite()
}

// down relays the first cut bytes and then ends the client's stream as
// p.end says. Except for "rst", it closes the client's socket only once
// the client has stopped sending (up is done): closing it with the
// client's bytes unread would send a RST, which discards what the client
// has not read yet, and the clean end under test would look like a reset.
func (p *faultyProxy) down(c, b *net.TCPConn, upDone <-chan struct{}) {
	defer p.wg.Done()
	defer c.Close()
	defer b.Close()
	if p.end != "rst" {
		defer func() { <-upDone }()
	}
	io.CopyN(c, b, p.cut)
	switch p.end {
	case "fin":
		c.CloseWrite()
		io.Copy(io.Discard, b)
	case "rst":
		c.SetLinger(0)
		b.SetLinger(0)
	case "flip":
		one := make([]byte, 1)
		if _, err := io.ReadFull(b, one); err == nil {
			c.Write([]byte{one[0] ^ 0x40})
		}
		io.Copy(c, b)
		c.CloseWrite()
	}
}

func TestStreamFaultsDetected(t *testing.T) {
	cases := []struct {
		end        string
		wantStatus string
		wantCause  string
	}{
		{"fin", statusTruncated, "down:clean_eof_short"},
		{"rst", statusFail, "down:reset"},
		{"flip", statusCorrupted, "down:corrupted"},
	}
	for _, tc := range cases {
		for m := range numModes {
			t.Run(fmt.Sprintf("%s/%v", tc.end, m), func(t *testing.T) {
				addr, verdicts := startBackend(t, nil)
				p := &faultyProxy{backend: addr, cut: ackLen + 5000, end: tc.end}
				front := p.start(t)
				h := header{ID: 1, Mode: m, Up: 20_000, Down: 50_000, Seed: 99}
				res := runClient(context.Background(), target{addr: front}, kindPlain, h, 10*time.Second)
				// A reset reaches whichever direction meets it first.
				if tc.end == "rst" && m == modeBoth && res.Status == statusFail && (res.Cause == "up:reset" || res.Cause == "up:broken_pipe") {
					res.Cause = tc.wantCause
				}
				if res.Status != tc.wantStatus || res.Cause != tc.wantCause {
					t.Fatalf("client: got %s %s, want %s %s (%+v)", res.Status, res.Cause, tc.wantStatus, tc.wantCause, res)
				}
				if tc.end == "fin" && res.DownGot != 5000 {
					t.Errorf("truncated stream: got %d bytes, want 5000", res.DownGot)
				}
				if tc.end == "flip" && res.Corrupt != 1 {
					t.Errorf("corrupt bytes: %d, want 1", res.Corrupt)
				}
				// The backend's verdict depends on the order: its bytes left
				// it before the proxy cut them, so it may well say ok. The
				// soak judges such a stream by the client's side.
				<-verdicts
			})
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h := header{ID: 1<<40 + 3, Mode: modeBackendFirst, Up: 12345, Down: 1 << 33, Seed: 0xdeadbeef}
	got, err := parseHeader(h.marshal())
	if err != nil || got != h {
		t.Fatalf("got %+v, %v", got, err)
	}
	bad := h.marshal()
	bad[4] = byte(numModes)
	if _, err := parseHeader(bad); err == nil {
		t.Fatal("bad mode accepted")
	}
	v := verdict{ID: 9, PID: 77, Status: statusFail, Cause: "up:reset", Got: 5, Want: 6, Corrupt: 0}
	pv, err := parseVerdict(v.line())
	if err != nil || pv != v {
		t.Fatalf("verdict round trip: %+v, %v", pv, err)
	}
}
