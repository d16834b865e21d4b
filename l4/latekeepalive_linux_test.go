package l4

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLateKeepAlive: a dialled socket gets its keepalive from the timer,
// or at once from now() while the timer is pending, and never once
// stopped; an injected Dialer, keepalive off and unix sockets get none.
func TestLateKeepAlive(t *testing.T) {
	// A backend that closes what it accepts: the options read are the
	// dialled socket's own.
	back := newWorld(t).backend(func(net.Conn) {})
	upstream := func(so SocketOptions, after time.Duration) *Upstream {
		return &Upstream{Name: "app", Servers: []*Backend{NewBackend(back.addr())}, Socket: so, keepAliveAfter: after}
	}
	keepIdle := func(c net.Conn) int { return readTCPOptions(t, c.(*net.TCPConn)).keepIdle }

	t.Run("timer", func(t *testing.T) {
		u := upstream(SocketOptions{KeepAlive: 42 * time.Second}, time.Millisecond)
		c := dialUpstream(t, u)
		k := u.keepAliveLater(c)
		if k == nil {
			t.Fatal("no keepalive arranged")
		}
		defer k.stop()
		// Polling the socket's options: the timer's goroutine says nothing.
		deadline := time.Now().Add(testTimeout)
		for keepIdle(c) != 42 {
			if time.Now().After(deadline) {
				t.Fatalf("keepalive not set %v after the dial", testTimeout)
			}
			time.Sleep(time.Millisecond)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		u := upstream(SocketOptions{}, time.Hour)
		c := dialUpstream(t, u)
		k := u.keepAliveLater(c)
		k.stop()
		k.now() // stopped: nothing to do
		if got := readTCPOptions(t, c.(*net.TCPConn)); got.keepAlive != 0 {
			t.Errorf("keepalive set after stop: %+v", got)
		}
	})
	t.Run("now", func(t *testing.T) {
		u := upstream(SocketOptions{}, time.Hour)
		c := dialUpstream(t, u)
		u.keepAliveLater(c).now()
		if got := keepIdle(c); got != int(DefaultKeepAlive/time.Second) {
			t.Errorf("TCP_KEEPIDLE %d after now(), want %v", got, DefaultKeepAlive)
		}
	})
	t.Run("none", func(t *testing.T) {
		off := upstream(SocketOptions{KeepAlive: -1}, 0)
		injected := upstream(SocketOptions{}, 0)
		injected.Dialer = &net.Dialer{KeepAlive: -1}
		for _, u := range []*Upstream{off, injected} {
			if k := u.keepAliveLater(dialUpstream(t, u)); k != nil {
				t.Errorf("keepalive arranged with %+v, dialer %v", u.Socket, u.Dialer)
			}
		}
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		if k := upstream(SocketOptions{}, 0).keepAliveLater(a); k != nil {
			t.Error("keepalive arranged on a conn that is not TCP")
		}
	})
}

// TestMoveSetsKeepAlive: a connection handed to another process before
// its backend socket's keepalive was due takes the keepalive along (the
// next process would not set it): the socket has it as it leaves.
func TestMoveSetsKeepAlive(t *testing.T) {
	e := connectThrough(t, "plain", nil)
	io.WriteString(e.client, "x") // the relay has started once it carries a byte
	readExactly(t, e.backend, "x")
	keepAlive := -1
	_, stayed := e.p.MoveConns(context.Background(), func(_ []byte, _, backend syscall.Conn) error {
		keepAlive = getsockopt(t, backend, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		return errors.New("not this time") // it stays here and relays on
	})
	if stayed != 1 || keepAlive != 1 {
		t.Errorf("stayed %d, the backend socket's SO_KEEPALIVE %d as it left; want 1 and 1", stayed, keepAlive)
	}
	io.WriteString(e.client, "y")
	readExactly(t, e.backend, "y")
	e.client.Close()
	e.backend.Close()
	e.w.waitLog("msg=access", "route=r", "client_end=closed", "backend_end=closed")
}
