package main

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestFlood(t *testing.T) {
	addr := startTLSEcho(t)
	s := startSession(t, runFlood, config{
		mode: "flood", addr: addr, conns: 4, dialers: 1,
		dialTimeout: 5 * time.Second, timeout: testTimeout, duration: 300 * time.Millisecond,
	})
	var res floodReport
	s.expect("RESULT", &res)
	s.wait()
	t.Logf("RESULT %+v", res)
	if res.Handshakes == 0 || res.Refused+res.Reset+res.Timeout+res.Other != 0 || len(res.Errors) != 0 {
		t.Errorf("RESULT %+v", res)
	}
	if !(res.PerSecond > 0 && 0 < res.P50 && res.P50 <= res.P99 && res.P99 <= res.Max) {
		t.Errorf("rates or latencies wrong: %+v", res)
	}
}

// TestFloodFailures checks that each kind of failure is counted as such.
func TestFloodFailures(t *testing.T) {
	tests := []struct {
		name        string
		listen      func(t *testing.T) string
		dialTimeout time.Duration
		want        func(r floodReport) int64
	}{
		{"refused", closedAddr, time.Second, func(r floodReport) int64 { return r.Refused }},
		{"reset", resettingAddr, time.Second, func(r floodReport) int64 { return r.Reset }},
		{"timeout", silentAddr, 50 * time.Millisecond, func(r floodReport) int64 { return r.Timeout }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSession(t, runFlood, config{
				mode: "flood", addr: tt.listen(t), conns: 2, dialers: 1,
				dialTimeout: tt.dialTimeout, timeout: testTimeout, duration: 200 * time.Millisecond,
			})
			var res floodReport
			s.expect("RESULT", &res)
			s.wait()
			t.Logf("RESULT %+v", res)
			// A loaded machine may add timeouts to the others.
			if res.Handshakes != 0 || tt.want(res) == 0 || res.Other != 0 || len(res.Errors) == 0 {
				t.Errorf("RESULT %+v", res)
			}
		})
	}
}

// closedAddr returns an address where nothing listens: connections are
// refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// resettingAddr returns the address of a server that resets every
// connection once it has read something (the ClientHello).
func resettingAddr(t *testing.T) string {
	t.Helper()
	return startTCPServer(t, func(c *net.TCPConn) {
		var b [1]byte
		io.ReadFull(c, b[:])
		c.SetLinger(0) // Close sends a RST
	})
}

// silentAddr returns the address of a listener that never accepts: the
// kernel completes connections and nothing answers.
func silentAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// startTCPServer starts a plain TCP server on loopback that runs serve on
// each connection in a goroutine, closing it afterwards, and returns its
// address.
func startTCPServer(t *testing.T, serve func(*net.TCPConn)) string {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, func(c net.Conn) { serve(c.(*net.TCPConn)) })
}

func TestClassify(t *testing.T) {
	// Errors as the net package returns them, through a real socket.
	_, refused := net.Dial("tcp", closedAddr(t))
	tests := []struct {
		name string
		err  error
		want failureKind
	}{
		{"refused", refused, failRefused},
		{"eof", io.EOF, failReset},
		{"unexpected eof", io.ErrUnexpectedEOF, failReset},
		{"deadline", &net.OpError{Op: "read", Err: timeoutError{}}, failTimeout},
		{"other", io.ErrShortWrite, failOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// timeoutError is a net.Error that is a timeout.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
