package l4

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingDialer is an injected Dialer that records every address dialed.
// Addresses in down fail at once; addresses in hang block until the dial
// context ends. Others connect to target (a real loopback backend) if set,
// else return one end of a net.Pipe, whose other end is closed at cleanup.
type recordingDialer struct {
	t      *testing.T
	target string

	mu       sync.Mutex
	dialed   []string // "network address", in order
	down     map[string]bool
	hang     map[string]bool
	entered  chan string // receives each address a hanging dial blocks on
	networks []string
}

func newRecordingDialer(t *testing.T) *recordingDialer {
	return &recordingDialer{t: t, down: map[string]bool{}, hang: map[string]bool{}, entered: make(chan string, 16)}
}

func (d *recordingDialer) setDown(addr string, down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down[addr] = down
}

// take returns the addresses dialed since the last take, and forgets them.
func (d *recordingDialer) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.dialed
	d.dialed = nil
	return out
}

func (d *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, addr)
	d.networks = append(d.networks, network)
	down, hang := d.down[addr], d.hang[addr]
	d.mu.Unlock()
	switch {
	case down:
		return nil, errors.New("connection refused")
	case hang:
		d.entered <- addr
		<-ctx.Done()
		return nil, ctx.Err()
	case d.target != "":
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", d.target)
	}
	a, b := net.Pipe()
	d.t.Cleanup(func() { b.Close() })
	return a, nil
}

// testUpstream makes an Upstream of servers dialed through d.
func testUpstream(d *recordingDialer, servers ...string) *Upstream {
	u := &Upstream{Name: "pool", Dialer: d}
	for _, s := range servers {
		u.Servers = append(u.Servers, NewBackend(s))
	}
	return u
}

// dialOnce runs one Dial and returns the server chosen ("" on error) and
// the addresses tried. The conn is closed and, unless hold, released.
func dialOnce(t *testing.T, u *Upstream, d *recordingDialer, hold bool) (string, []string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, s, err := u.Dial(ctx)
	tried := d.take()
	if err != nil {
		if c != nil || s != nil {
			t.Fatalf("Dial returned an error and a conn: %v", err)
		}
		return "", tried, err
	}
	c.Close()
	if !hold {
		s.done()
	}
	if last := tried[len(tried)-1]; last != s.address {
		t.Fatalf("Dial returned server %s, but the last address dialed was %s", s.Addr, last)
	}
	return s.Addr, tried, nil
}

// mustDial is dialOnce that expects success from server want after trying
// exactly tried.
func mustDial(t *testing.T, u *Upstream, d *recordingDialer, want string, tried ...string) {
	t.Helper()
	got, gotTried, err := dialOnce(t, u, d, false)
	if err != nil {
		t.Fatalf("Dial: %v (tried %q)", err, gotTried)
	}
	if got != want || !slices.Equal(gotTried, tried) {
		t.Fatalf("Dial chose %s after trying %q; want %s after %q", got, gotTried, want, tried)
	}
}

func TestUpstreamRoundRobin(t *testing.T) {
	d := newRecordingDialer(t)
	u := testUpstream(d, "a:1", "b:1", "c:1")
	var got []string
	for range 7 {
		s, _, err := dialOnce(t, u, d, false)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	want := []string{"a:1", "b:1", "c:1", "a:1", "b:1", "c:1", "a:1"}
	if !slices.Equal(got, want) {
		t.Fatalf("round robin chose %q, want %q", got, want)
	}
	for _, s := range u.Servers {
		if s.Active() != 0 {
			t.Errorf("%s: %d active after every conn was released", s.Addr, s.Active())
		}
	}
}

func TestUpstreamFailover(t *testing.T) {
	t.Run("next server after a failure", func(t *testing.T) {
		w := newWorld(t)
		d := newRecordingDialer(t)
		d.target = w.backend(echo).addr()
		d.setDown("a:1", true)
		u := testUpstream(d, "a:1", "b:1", "c:1")
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		c, s, err := u.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		defer s.done()
		if tried := d.take(); s.Addr != "b:1" || !slices.Equal(tried, []string{"a:1", "b:1"}) {
			t.Fatalf("chose %s after %q; want b:1 after [a:1 b:1]", s.Addr, tried)
		}
		if s.Active() != 1 {
			t.Errorf("b:1 has %d active, want 1", s.Active())
		}
		// The conn is the real one the dialer made.
		c.SetDeadline(time.Now().Add(testTimeout))
		c.Write([]byte("hi"))
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("echo over the dialed conn: %q, %v", buf, err)
		}
	})

	t.Run("all fail: each tried once, every one named", func(t *testing.T) {
		d := newRecordingDialer(t)
		servers := []string{"a:1", "b:1", "unix:/run/c.sock"}
		for _, s := range []string{"a:1", "b:1", "/run/c.sock"} {
			d.setDown(s, true)
		}
		u := testUpstream(d, servers...)
		u.MaxFails = 0
		_, tried, err := dialOnce(t, u, d, false)
		if err == nil {
			t.Fatal("Dial succeeded with every server down")
		}
		if !slices.Equal(tried, []string{"a:1", "b:1", "/run/c.sock"}) {
			t.Errorf("tried %q, want each server once in order", tried)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "upstream pool: ") {
			t.Errorf("error does not name the upstream: %q", msg)
		}
		for _, s := range servers {
			if !strings.Contains(msg, "dial "+s+": connection refused") {
				t.Errorf("error does not name %s: %q", s, msg)
			}
		}
	})
}

func TestUpstreamEjection(t *testing.T) {
	t.Run("after max_fails the server is tried last", func(t *testing.T) {
		d := newRecordingDialer(t)
		var logs syncBuffer
		u := testUpstream(d, "a:1", "b:1")
		u.MaxFails, u.FailTimeout = 2, time.Hour
		u.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		d.setDown("a:1", true)

		mustDial(t, u, d, "b:1", "a:1", "b:1") // a: 1 fail
		mustDial(t, u, d, "b:1", "b:1")
		if strings.Contains(logs.String(), "marked down") {
			t.Fatalf("a:1 marked down after one failure with max_fails 2:\n%s", logs.String())
		}
		mustDial(t, u, d, "b:1", "a:1", "b:1") // a: 2 fails, out
		if !strings.Contains(logs.String(), `msg="upstream server marked down" upstream=pool server=a:1 for=1h0m0s`) {
			t.Errorf("no log line for a:1 going down:\n%s", logs.String())
		}
		// Its turn comes round, but it is not tried while b is fine.
		mustDial(t, u, d, "b:1", "b:1")
		mustDial(t, u, d, "b:1", "b:1")
		if u.Servers[0].available(time.Now()) {
			t.Error("a:1 is available after max_fails failures")
		}

		// Only when every other server fails is it tried, last.
		d.setDown("b:1", true)
		if s, tried, err := dialOnce(t, u, d, false); err == nil || !slices.Equal(tried, []string{"b:1", "a:1"}) {
			t.Fatalf("chose %q after %q (err %v); want an error after [b:1 a:1]", s, tried, err)
		}
		// b has failed once (of two). a comes back: tried last, it
		// succeeds and is back in rotation.
		d.setDown("a:1", false)
		mustDial(t, u, d, "a:1", "b:1", "a:1") // b: 2 fails, out
		if !u.Servers[0].available(time.Now()) {
			t.Error("a:1 still out after a successful dial")
		}
		mustDial(t, u, d, "a:1", "a:1")
		mustDial(t, u, d, "a:1", "a:1")
	})

	t.Run("max_fails 0 never ejects", func(t *testing.T) {
		d := newRecordingDialer(t)
		u := testUpstream(d, "a:1", "b:1")
		u.MaxFails, u.FailTimeout = 0, time.Hour
		d.setDown("a:1", true)
		for range 5 {
			mustDial(t, u, d, "b:1", "a:1", "b:1")
			mustDial(t, u, d, "b:1", "b:1")
		}
		if !u.Servers[0].available(time.Now()) {
			t.Error("a:1 taken out with max_fails 0")
		}
	})

	t.Run("a success resets the fail count", func(t *testing.T) {
		d := newRecordingDialer(t)
		u := testUpstream(d, "a:1", "b:1")
		u.MaxFails, u.FailTimeout = 2, time.Hour
		d.setDown("a:1", true)
		mustDial(t, u, d, "b:1", "a:1", "b:1") // a: 1 fail
		mustDial(t, u, d, "b:1", "b:1")
		d.setDown("a:1", false)
		mustDial(t, u, d, "a:1", "a:1") // a: reset
		mustDial(t, u, d, "b:1", "b:1")
		d.setDown("a:1", true)
		mustDial(t, u, d, "b:1", "a:1", "b:1") // a: 1 fail, not 2
		mustDial(t, u, d, "b:1", "b:1")
		mustDial(t, u, d, "b:1", "a:1", "b:1") // a: 2 fails, out
		mustDial(t, u, d, "b:1", "b:1")
		mustDial(t, u, d, "b:1", "b:1")
	})

	t.Run("the server back after fail_timeout", func(t *testing.T) {
		d := newRecordingDialer(t)
		u := testUpstream(d, "a:1", "b:1")
		u.MaxFails, u.FailTimeout = 1, time.Hour
		d.setDown("a:1", true)
		mustDial(t, u, d, "b:1", "a:1", "b:1") // a out until now+1h
		a := u.Servers[0]
		if a.available(time.Now()) || !a.available(time.Now().Add(time.Hour+time.Second)) {
			t.Fatal("a:1 should be out for fail_timeout and back after it")
		}
	})
}

func TestUpstreamLeastConn(t *testing.T) {
	d := newRecordingDialer(t)
	u := testUpstream(d, "a:1", "b:1", "c:1")
	u.Balance = LeastConn
	a, b, c := u.Servers[0], u.Servers[1], u.Servers[2]
	hold := func(want string) {
		t.Helper()
		got, tried, err := dialOnce(t, u, d, true)
		if err != nil || got != want || len(tried) != 1 {
			t.Fatalf("least_conn chose %q after %q (err %v), want %s (active a=%d b=%d c=%d)",
				got, tried, err, want, a.Active(), b.Active(), c.Active())
		}
	}
	// All idle: ties rotate.
	hold("a:1")
	hold("b:1")
	hold("c:1")
	b.done() // a=1 b=0 c=1; round robin would pick a now
	hold("b:1")
	c.done() // a=1 b=1 c=0; round robin would pick b now
	hold("c:1")
	hold("c:1") // a=1 b=1 c=1 → rotation (cursor at c)
	if a.Active() != 1 || b.Active() != 1 || c.Active() != 2 {
		t.Fatalf("active a=%d b=%d c=%d, want 1 1 2", a.Active(), b.Active(), c.Active())
	}
	a.done()
	b.done()
	c.done()
	c.done()
	for _, s := range u.Servers {
		if s.Active() != 0 {
			t.Errorf("%s: %d active after release", s.Addr, s.Active())
		}
	}
}

func TestUpstreamContextCanceled(t *testing.T) {
	d := newRecordingDialer(t)
	d.hang["a:1"], d.hang["b:1"] = true, true
	u := testUpstream(d, "a:1", "b:1")
	u.MaxFails, u.ConnectTimeout = 1, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, _, err := u.Dial(ctx)
		done <- result{c, err}
	}()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	select {
	case <-d.entered:
	case <-timer.C:
		t.Fatal("the dialer was never called")
	}
	cancel()
	var r result
	select {
	case r = <-done:
	case <-timer.C:
		t.Fatal("Dial did not return after its context was cancelled")
	}
	if r.c != nil || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Dial after cancel: %v, %v; want context.Canceled", r.c, r.err)
	}
	if !strings.Contains(r.err.Error(), "upstream pool") {
		t.Errorf("error does not name the upstream: %v", r.err)
	}
	// The client gave up: no other server is tried, and none is blamed.
	if tried := d.take(); len(tried) != 1 {
		t.Errorf("tried %q after the cancel, want only the first server", tried)
	}
	for _, s := range u.Servers {
		if !s.available(time.Now()) {
			t.Errorf("%s taken out because the client went away", s.Addr)
		}
	}
}

func TestUpstreamConnectTimeout(t *testing.T) {
	d := newRecordingDialer(t)
	d.hang["a:1"] = true
	u := testUpstream(d, "a:1", "b:1")
	u.MaxFails, u.ConnectTimeout = 1, 50*time.Millisecond
	mustDial(t, u, d, "b:1", "a:1", "b:1")
	<-d.entered
	if u.Servers[0].available(time.Now()) {
		t.Error("a:1, which timed out, is still in rotation")
	}
}

func TestUpstreamUnixServers(t *testing.T) {
	for _, tc := range []struct {
		addr, network, address string
	}{
		{"unix:/run/app.sock", "unix", "/run/app.sock"},
		{"unix:relative.sock", "unix", "relative.sock"},
		{"127.0.0.1:8080", "tcp", "127.0.0.1:8080"},
		{"[::1]:8080", "tcp", "[::1]:8080"},
		{"app.internal:80", "tcp", "app.internal:80"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			s := NewBackend(tc.addr)
			if s.Addr != tc.addr || s.network != tc.network || s.address != tc.address {
				t.Fatalf("NewBackend(%q) = %s %s %q, want %s %q", tc.addr, s.network, s.address, s.Addr, tc.network, tc.address)
			}
			d := newRecordingDialer(t)
			u := testUpstream(d, tc.addr)
			mustDial(t, u, d, tc.addr, tc.address)
			if !slices.Equal(d.networks, []string{tc.network}) {
				t.Errorf("dialed network %q, want %s", d.networks, tc.network)
			}
		})
	}

	t.Run("real socket", func(t *testing.T) {
		dir, err := os.MkdirTemp("", "sluice")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		path := filepath.Join(dir, "b.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
			}
			close(accepted)
		}()
		u := &Upstream{Name: "sock", Servers: []*Backend{NewBackend("unix:" + path)}}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		c, s, err := u.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.done()
		defer c.Close()
		if _, ok := c.(*net.UnixConn); !ok {
			t.Errorf("Dial returned %T, want *net.UnixConn", c)
		}
		if sc := <-accepted; sc != nil {
			sc.Close()
		} else {
			t.Error("the unix listener accepted nothing")
		}
	})
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestUpstreamFailoverThroughProxy(t *testing.T) {
	t.Run("dead server skipped", func(t *testing.T) {
		w := newWorld(t)
		dead := closedPort(t)
		cfg := w.simple(dead)
		cfg.Upstreams[0].Servers = append(cfg.Upstreams[0].Servers, w.backend(echo).addr())
		_, addrs := w.serve(cfg)
		for i := range 3 {
			c := w.mustDialTLS(addrs[0], nil)
			msg := []byte(fmt.Sprintf("hello %d", i))
			c.Write(msg)
			c.CloseWrite()
			if got := readAll(t, c); !bytes.Equal(got, msg) {
				t.Fatalf("conn %d: echo %q, want %q", i, got, msg)
			}
			c.Close()
		}
		w.waitLog("level=WARN", `msg="upstream server marked down"`, "upstream=app", "server="+dead)
	})

	t.Run("all dead", func(t *testing.T) {
		w := newWorld(t)
		dead1, dead2 := closedPort(t), closedPort(t)
		cfg := w.simple(dead1)
		cfg.Upstreams[0].Servers = append(cfg.Upstreams[0].Servers, dead2)
		_, addrs := w.serve(cfg)
		c := w.mustDialTLS(addrs[0], nil)
		expectClosed(t, c)
		w.waitLog("level=WARN", "msg=access", "reason=upstream_unavailable", "route=default",
			"dial "+dead1+": ", "dial "+dead2+": ")
	})
}
