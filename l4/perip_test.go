package l4

import (
	"errors"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectRefused dials addr from src and expects the connection to be
// cut at once: the reset may arrive before the dial has returned.
func expectRefused(t *testing.T, src, addr string) {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return
	}
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	defer c.Close()
	expectClosed(t, c)
}

// echoes checks that c is relayed: a line sent comes back.
func echoes(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := readLine(t, c); got != "ping" {
		t.Fatalf("echo = %q", got)
	}
}

// plainConfig is w.simple without TLS, its listener tuned by tune.
func plainConfig(w *world, tune func(*ListenerConfig)) *Config {
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].TLS = nil
	tune(&cfg.Listeners[0])
	return cfg
}

// TestMaxConnectionsPerIP: a client past its limit is reset, others are
// not, the limit counts the client's live connections only, and the
// refusals are summed up in one warning rather than an access line each.
func TestMaxConnectionsPerIP(t *testing.T) {
	w := newWorld(t)
	_, addrs := w.serve(plainConfig(w, func(l *ListenerConfig) { l.MaxConnectionsPerIP = 2 }))
	a1, a2 := dialFrom(t, "127.0.0.1", addrs[0]), dialFrom(t, "127.0.0.1", addrs[0])
	echoes(t, a1)
	echoes(t, a2)
	for range 3 {
		expectRefused(t, "127.0.0.1", addrs[0])
	}
	echoes(t, dialFrom(t, "127.0.0.2", addrs[0])) // another client
	// At most a line a second, which together count every refusal.
	waitRefusals(t, w, "max_connections_per_ip", 3)
	w.waitLog("level=DEBUG msg=access", "reason=max_connections_per_ip")

	a1.Close()
	w.waitLog("msg=access", "client=127.0.0.1", "reason=client_closed")
	echoes(t, dialFrom(t, "127.0.0.1", addrs[0])) // a slot is free again
	if n := strings.Count(w.logs.String(), "level=INFO msg=access"); n != 1 {
		t.Errorf("%d info access lines, want 1 (the closed connection):\n%s", n, w.logs.String())
	}
}

// waitRefusals waits until the warnings of limit add up to n refusals.
func waitRefusals(t *testing.T, w *world, limit string, n int) {
	t.Helper()
	re := regexp.MustCompile(`msg="limit refused connections" listener=test limit=` + limit + ` refused=(\d+)`)
	deadline := time.Now().Add(testTimeout)
	for {
		total := 0
		for _, m := range re.FindAllStringSubmatch(w.logs.String(), -1) {
			k, _ := strconv.Atoi(m[1])
			total += k
		}
		if total == n {
			return
		}
		if total > n || time.Now().After(deadline) {
			t.Fatalf("warnings of %s count %d refusals, want %d:\n%s", limit, total, n, w.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRatePerIP: past its burst, a client's new connections are refused
// until its budget refills; another client is not affected.
func TestRatePerIP(t *testing.T) {
	w := newWorld(t)
	_, addrs := w.serve(plainConfig(w, func(l *ListenerConfig) { l.RatePerIP, l.RateBurst = 0.001, 2 }))
	echoes(t, dialFrom(t, "127.0.0.1", addrs[0]))
	echoes(t, dialFrom(t, "127.0.0.1", addrs[0]))
	expectRefused(t, "127.0.0.1", addrs[0])
	echoes(t, dialFrom(t, "127.0.0.2", addrs[0]))
	w.waitLog("level=DEBUG msg=access", "reason=rate_per_ip")
	waitRefusals(t, w, "rate_per_ip", 1)
}

// TestPerIPLimitsUseProxyAddress: behind a trusted proxy, the client is
// the PROXY header's source, not the proxy.
func TestPerIPLimitsUseProxyAddress(t *testing.T) {
	w := newWorld(t)
	_, addrs := w.serve(plainConfig(w, func(l *ListenerConfig) {
		l.AcceptProxy, l.TrustedProxies = true, []string{"127.0.0.0/8"}
		l.MaxConnectionsPerIP = 1
	}))
	via := func(src string) net.Conn {
		c := dialFrom(t, "127.0.0.1", addrs[0])
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(src), Port: 1234}, c.RemoteAddr())
		if _, err := h.WriteTo(c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	echoes(t, via("203.0.113.7"))
	expectClosed(t, via("203.0.113.7"))
	echoes(t, via("203.0.113.8"))
}

// TestClientKey: IPv4 addresses are clients of their own; IPv6 ones are
// grouped by the configured prefix.
func TestClientKey(t *testing.T) {
	l := newIPLimits()
	l.setLimits(1, 0, 1, 64)
	key := func(ip string) netip.Prefix {
		k, ok := l.clientKey(&net.TCPAddr{IP: net.ParseIP(ip)})
		if !ok {
			t.Fatalf("no key for %s", ip)
		}
		return k
	}
	if key("2001:db8::1") != key("2001:db8::ffff:2") {
		t.Error("two addresses of one /64 are different clients")
	}
	if key("2001:db8:0:1::1") == key("2001:db8::1") {
		t.Error("two /64s are one client")
	}
	if key("::ffff:192.0.2.1") != key("192.0.2.1") {
		t.Error("an IPv4-mapped address is not its IPv4 client")
	}
	if key("192.0.2.1") == key("192.0.2.2") {
		t.Error("two IPv4 addresses are one client")
	}
	l.setLimits(1, 0, 1, 128)
	if key("2001:db8::1") == key("2001:db8::2") {
		t.Error("with ipv6_prefix = 128, two addresses are one client")
	}
	if _, ok := l.clientKey(&net.UnixAddr{Name: "/run/x"}); ok {
		t.Error("a unix peer has a client key")
	}
}

// TestClientTableBounded: the table forgets clients that hold nothing
// and whose rate budget has refilled, and never grows past its bound.
func TestClientTableBounded(t *testing.T) {
	l := newIPLimits()
	l.setLimits(0, 1000, 1, 64) // refills in 1 ms
	now := time.Now()
	addr := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	for i := range maxTrackedClients {
		if ok, _ := l.admit(addr(i), now); !ok {
			t.Fatalf("client %d refused", i)
		}
		l.release(addr(i), now)
	}
	if n := l.tracked(); n != maxTrackedClients {
		t.Fatalf("tracked %d, want %d", n, maxTrackedClients)
	}
	later := now.Add(10 * time.Millisecond)
	if ok, _ := l.admit(addr(maxTrackedClients), later); !ok {
		t.Fatal("a new client refused when the table is full of idle ones")
	}
	if n := l.tracked(); n != 1 {
		t.Errorf("tracked %d after the sweep, want 1", n)
	}

	// Without a rate limit, a client is forgotten as its last connection ends.
	l.setLimits(5, 0, 1, 64)
	l.release(addr(maxTrackedClients), later)
	if n := l.tracked(); n != 0 {
		t.Errorf("tracked %d with nothing open and no rate limit, want 0", n)
	}
}

// TestMaxConnectionLifetime: a relayed connection is cut at the lifetime,
// with its own reason, and both sides see the abort.
func TestMaxConnectionLifetime(t *testing.T) {
	w := newWorld(t)
	_, addrs := w.serve(plainConfig(w, func(l *ListenerConfig) {
		l.MaxConnectionLifetime = Duration{200 * time.Millisecond}
	}))
	c := dialFrom(t, "127.0.0.1", addrs[0])
	echoes(t, c)
	start := time.Now()
	expectClosed(t, c)
	if d := time.Since(start); d > testTimeout/2 {
		t.Errorf("closed after %v", d)
	}
	w.waitLog("msg=access", "reason=max_connection_lifetime")
}

// TestMaxHandshakes: with one handshake slot, a handshake that waits for
// it longer than the queue timeout is closed with its reason, while the
// one holding it completes; once it is free, handshakes go on.
func TestMaxHandshakes(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.MaxHandshakes = 1
	cfg.HandshakeQueueTimeout = Duration{100 * time.Millisecond}
	cfg.Listeners[0].Deferred = new(bool) // accept before the first byte
	_, addrs := w.serve(cfg)

	// A client that has begun its handshake, and holds the slot while
	// sluice waits for its ClientHello.
	slow := dialFrom(t, "127.0.0.1", addrs[0])
	slow.Write([]byte{0x16, 0x03, 0x01})
	w.waitLog("msg=\"conn open\"", "listener=test")

	if _, err := w.dialTLS(addrs[0], nil); err == nil {
		t.Fatal("a handshake past max_handshakes completed")
	}
	w.waitLog("level=DEBUG msg=access", "reason=max_handshakes")
	waitRefusals(t, w, "max_handshakes", 1)

	slow.Close()
	w.waitLog("msg=access", "reason=handshake")
	c := w.mustDialTLS(addrs[0], nil)
	echoes(t, c)
}
