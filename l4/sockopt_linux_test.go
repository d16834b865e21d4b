package l4

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// getsockopt reads an integer socket option of c.
func getsockopt(t *testing.T, c syscall.Conn, level, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("getsockopt(%d, %d): %v", level, opt, gerr)
	}
	return v
}

// tcpOptions are the options of a TCP socket as read back.
type tcpOptions struct {
	noDelay, keepAlive, keepIdle, keepIntvl, keepCnt, rcvBuf, sndBuf int
}

func readTCPOptions(t *testing.T, c syscall.Conn) tcpOptions {
	t.Helper()
	o := tcpOptions{
		noDelay:   getsockopt(t, c, unix.IPPROTO_TCP, unix.TCP_NODELAY),
		keepAlive: getsockopt(t, c, unix.SOL_SOCKET, unix.SO_KEEPALIVE),
		rcvBuf:    getsockopt(t, c, unix.SOL_SOCKET, unix.SO_RCVBUF),
		sndBuf:    getsockopt(t, c, unix.SOL_SOCKET, unix.SO_SNDBUF),
	}
	if o.keepAlive != 0 {
		o.keepIdle = getsockopt(t, c, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		o.keepIntvl = getsockopt(t, c, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		o.keepCnt = getsockopt(t, c, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	}
	return o
}

// checkTCPOptions compares what was read back with what so asks for. Linux
// doubles the buffer sizes it is given; unset ones must be the kernel's
// default, which ref, a socket with no options set, has.
func checkTCPOptions(t *testing.T, got, ref tcpOptions, so SocketOptions) {
	t.Helper()
	want := tcpOptions{noDelay: 1, keepAlive: 1, keepIdle: 60, keepIntvl: 15, keepCnt: 4, rcvBuf: ref.rcvBuf, sndBuf: got.sndBuf}
	if so.Nagle {
		want.noDelay = 0
	}
	switch {
	case so.KeepAlive < 0:
		want.keepAlive, want.keepIdle, want.keepIntvl, want.keepCnt = 0, 0, 0, 0
	case so.KeepAlive > 0:
		want.keepIdle = int(so.KeepAlive / time.Second)
	}
	if so.KeepAlive >= 0 && so.KeepAliveInterval > 0 {
		want.keepIntvl = int(so.KeepAliveInterval / time.Second)
	}
	if so.KeepAlive >= 0 && so.KeepAliveCount > 0 {
		want.keepCnt = so.KeepAliveCount
	}
	if so.RcvBuf > 0 {
		want.rcvBuf = 2 * so.RcvBuf
	}
	if so.SndBuf > 0 {
		want.sndBuf = 2 * so.SndBuf
	}
	if got != want {
		t.Errorf("socket options:\n got %+v\nwant %+v", got, want)
	}
}

// Sizes no kernel default is likely to equal, once doubled.
const (
	testRcvBuf = 40 << 10
	testSndBuf = 24 << 10
)

var socketOptionCases = []struct {
	name string
	so   SocketOptions
}{
	{"defaults", SocketOptions{}},
	{"nagle", SocketOptions{Nagle: true}},
	{"keepalive 30s", SocketOptions{KeepAlive: 30 * time.Second}},
	{"keepalive off", SocketOptions{KeepAlive: -1}},
	{"keepalive timing", SocketOptions{KeepAliveInterval: 7 * time.Second, KeepAliveCount: 9}},
	{"buffers", SocketOptions{RcvBuf: testRcvBuf, SndBuf: testSndBuf}},
	{"all", SocketOptions{Nagle: true, KeepAlive: 2 * time.Minute, KeepAliveInterval: 3 * time.Second, KeepAliveCount: 2, RcvBuf: testRcvBuf, SndBuf: testSndBuf, DeferAccept: 3 * time.Second}},
}

// TestListenSocketOptions reads the options back from a connection the
// listener accepted, and TCP_DEFER_ACCEPT from the listening socket.
func TestListenSocketOptions(t *testing.T) {
	for _, tc := range socketOptionCases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := listen(context.Background(), "127.0.0.1:0", false, tc.so)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			client.Write([]byte{1}) // a deferred accept waits for data
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			tcpc, ok := c.(*net.TCPConn)
			if !ok {
				t.Fatalf("Accept returned %T, want *net.TCPConn", c)
			}
			so := tc.so
			checkTCPOptions(t, readTCPOptions(t, tcpc), readTCPOptions(t, client.(*net.TCPConn)), so)

			// Linux keeps TCP_DEFER_ACCEPT as SYN-ACK retransmissions and
			// reads it back as the seconds they span: 3s is 2 of them, 3s.
			want := 0
			if so.DeferAccept > 0 {
				want = 3
			}
			if got := getsockopt(t, ln.(syscall.Conn), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT); got != want {
				t.Errorf("TCP_DEFER_ACCEPT = %d, want %d", got, want)
			}
		})
	}
}

// TestListenDeferAccept: with TCP_DEFER_ACCEPT, a client that connects and
// says nothing is not accepted before one that speaks; without it, it is
// accepted as it is.
func TestListenDeferAccept(t *testing.T) {
	for _, deferred := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[deferred], func(t *testing.T) {
			var so SocketOptions
			if deferred {
				so.DeferAccept = 5 * time.Second
			}
			ln, err := listen(context.Background(), "127.0.0.1:0", false, so)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			silent, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			talker, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer talker.Close()
			talker.Write([]byte("hello"))

			// Deferred: the talker comes first, however the two raced.
			// Not deferred: both come, whatever the order.
			want := []string{talker.LocalAddr().String()}
			if !deferred {
				want = append(want, silent.LocalAddr().String())
			}
			var got []string
			for range want {
				c, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				got = append(got, c.RemoteAddr().String())
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("accepted %q, want %q (silent %s, talker %s)", got, want, silent.LocalAddr(), talker.LocalAddr())
			}
		})
	}
}

// TestDialSocketOptions reads the options back from a connection an
// Upstream dialled.
func TestDialSocketOptions(t *testing.T) {
	back, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	for _, tc := range socketOptionCases {
		t.Run(tc.name, func(t *testing.T) {
			u := &Upstream{Name: "app", Servers: []*Backend{NewBackend(back.Addr().String())}, Socket: tc.so}
			c := dialUpstream(t, u)
			peer, err := back.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			tcpc, ok := c.(*net.TCPConn)
			if !ok {
				t.Fatalf("Dial returned %T, want *net.TCPConn", c)
			}
			// Keepalive comes a while later (see keepAliveLater).
			if got := readTCPOptions(t, tcpc); got.keepAlive != 0 {
				t.Errorf("keepalive on at the dial: %+v", got)
			}
			u.keepAliveLater(c).now()
			checkTCPOptions(t, readTCPOptions(t, tcpc), readTCPOptions(t, peer.(*net.TCPConn)), tc.so)
		})
	}

	t.Run("injected dialer: options not applied", func(t *testing.T) {
		so := SocketOptions{Nagle: true, RcvBuf: testRcvBuf}
		u := &Upstream{Name: "app", Servers: []*Backend{NewBackend(back.Addr().String())}, Socket: so, Dialer: &net.Dialer{KeepAlive: -1}}
		c := dialUpstream(t, u)
		peer, err := back.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		got := readTCPOptions(t, c.(*net.TCPConn))
		if got.noDelay != 1 || got.keepAlive != 0 || got.rcvBuf == 2*testRcvBuf {
			t.Errorf("socket options %+v: want the injected dialer's (TCP_NODELAY on, no keepalive, default rcvbuf)", got)
		}
	})
}

// dialUpstream dials u and closes the conn at cleanup.
func dialUpstream(t *testing.T, u *Upstream) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, s, err := u.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		s.done()
	})
	return c
}

// TestUnixSocketOptions: on unix sockets the TCP options are skipped (a
// listener with them all still works) and the buffer sizes apply, to
// accepted and to dialled conns.
func TestUnixSocketOptions(t *testing.T) {
	dir, err := os.MkdirTemp("", "sluice-") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	so := socketOptionCases[len(socketOptionCases)-1].so // all of them
	ln, err := listen(context.Background(), "unix:"+path, false, so)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	u := &Upstream{Name: "app", Servers: []*Backend{NewBackend("unix:" + path)}, Socket: so}
	dialled := dialUpstream(t, u)
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	for _, c := range []net.Conn{accepted, dialled} {
		uc, ok := c.(*net.UnixConn)
		if !ok {
			t.Fatalf("got %T, want *net.UnixConn", c)
		}
		rcv := getsockopt(t, uc, unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd := getsockopt(t, uc, unix.SOL_SOCKET, unix.SO_SNDBUF)
		if rcv != 2*testRcvBuf || snd != 2*testSndBuf {
			t.Errorf("%s side: SO_RCVBUF %d, SO_SNDBUF %d; want %d, %d", map[bool]string{true: "accepted", false: "dialled"}[c == accepted],
				rcv, snd, 2*testRcvBuf, 2*testSndBuf)
		}
	}
	if _, err := dialled.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	accepted.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := accepted.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// TestProxySocketOptions: the configuration reaches the sockets.
func TestProxySocketOptions(t *testing.T) {
	w := newWorld(t)
	b := w.backend(echo)
	cfg := w.simple(b.addr())
	no := false
	cfg.Listeners[0].RcvBuf = testRcvBuf
	cfg.Listeners[0].HandshakeTimeout = Duration{2 * time.Second}
	// reuse_port: a second 127.0.0.1:0 is allowed, and SO_REUSEPORT is
	// still set next to the new options.
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Name: "plain", ReusePort: true, Routes: cfg.Listeners[0].Routes})
	cfg.Upstreams[0].NoDelay = &no
	cfg.Upstreams[0].KeepAlive = &Duration{90 * time.Second}
	cfg.Upstreams[0].KeepAliveInterval = Duration{20 * time.Second}
	cfg.Upstreams[0].KeepAliveCount = 6
	cfg.Upstreams[0].SndBuf = testSndBuf
	p, _ := w.serve(cfg)

	for i, want := range []struct{ deferAccept, rcvBuf, reusePort int }{
		{3, 2 * testRcvBuf, 0}, // TLS: deferred for 2s, which Linux reads back as 3
		{0, 0, 1},              // plain: not deferred, default buffer
	} {
		ln := p.gen.listeners[i].(syscall.Conn)
		if got := getsockopt(t, ln, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT); got != want.deferAccept {
			t.Errorf("listener[%d]: TCP_DEFER_ACCEPT = %d, want %d", i, got, want.deferAccept)
		}
		if got := getsockopt(t, ln, unix.SOL_SOCKET, unix.SO_REUSEPORT); got != want.reusePort {
			t.Errorf("listener[%d]: SO_REUSEPORT = %d, want %d", i, got, want.reusePort)
		}
		if got := getsockopt(t, ln, unix.SOL_SOCKET, unix.SO_RCVBUF); want.rcvBuf > 0 && got != want.rcvBuf {
			t.Errorf("listener[%d]: SO_RCVBUF = %d, want %d", i, got, want.rcvBuf)
		}
	}

	up := p.gen.servers[0].Routes[0].Upstream
	c := dialUpstream(t, up)
	up.keepAliveLater(c).now()
	got := readTCPOptions(t, c.(*net.TCPConn))
	if got.noDelay != 0 || got.keepIdle != 90 || got.keepIntvl != 20 || got.keepCnt != 6 || got.sndBuf != 2*testSndBuf {
		t.Errorf("dialled: %+v, want TCP_NODELAY off, keepalive after 90s then every 20s 6 times, SO_SNDBUF %d", got, 2*testSndBuf)
	}
}

// TestAdoptSocketOptions: a listener kept across a reload gives the
// sockets it accepts from then on the new configuration's options, those
// the listening socket passes on (keepalive) and those set after accept.
func TestAdoptSocketOptions(t *testing.T) {
	ln, err := listen(context.Background(), "127.0.0.1:0", false, SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, so := range []SocketOptions{
		{},
		{Nagle: true, KeepAlive: 2 * time.Minute, KeepAliveInterval: 3 * time.Second, KeepAliveCount: 2},
		{KeepAlive: -1},
		{KeepAlive: 45 * time.Second},
	} {
		if err := adopt(ln, so); err != nil {
			t.Fatal(err)
		}
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		checkTCPOptions(t, readTCPOptions(t, c.(*net.TCPConn)), readTCPOptions(t, client.(*net.TCPConn)), so)
		c.Close()
		client.Close()
	}
}
