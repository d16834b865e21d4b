package l4

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// ppResult is what a PROXY-reading backend saw at the start of a conn.
type ppResult struct {
	h   *proxyproto.Header
	err error
}

// ppBackend starts a backend that reads a PROXY header, hands it over on
// the returned channel, then echoes what follows it (from the bufio
// reader, which may already hold application bytes).
func ppBackend(w *world) (*backend, <-chan ppResult) {
	got := make(chan ppResult, 8)
	b := w.backend(func(c net.Conn) {
		c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		got <- ppResult{h, err}
		if err != nil {
			return
		}
		io.Copy(c, br)
		c.(*net.TCPConn).CloseWrite()
	})
	return b, got
}

// ppHeader waits for the header a ppBackend received.
func ppHeader(t *testing.T, got <-chan ppResult) *proxyproto.Header {
	t.Helper()
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("backend: read PROXY header: %v", r.err)
		}
		return r.h
	case <-time.After(testTimeout):
		t.Fatal("backend received no connection")
		return nil
	}
}

// ppEcho sends a line through c and expects it back unchanged.
func ppEcho(t *testing.T, c net.Conn, line string) {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := readLine(t, c); got != line {
		t.Fatalf("echo: got %q, want %q", got, line)
	}
}

// ppTLVs indexes a header's TLVs by type; a type must appear once.
func ppTLVs(t *testing.T, h *proxyproto.Header) map[proxyproto.PP2Type][]byte {
	t.Helper()
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatalf("TLVs: %v", err)
	}
	m := make(map[proxyproto.PP2Type][]byte)
	for _, v := range tlvs {
		if _, dup := m[v.Type]; dup {
			t.Errorf("TLV 0x%02x appears twice", byte(v.Type))
		}
		m[v.Type] = v.Value
	}
	return m
}

var ppConnID = regexp.MustCompile(`(?:^| )conn=(\S+)`)

// ppAccessLine waits for the access-log line of the conn from client.
// The trailing space keeps 127.0.0.1:1234 from matching :12345.
func ppAccessLine(w *world, client string, parts ...string) string {
	w.t.Helper()
	return w.waitLog(append([]string{"msg=access", "client=" + client + " "}, parts...)...)
}

func ppLogField(t *testing.T, re *regexp.Regexp, line string) string {
	t.Helper()
	m := re.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no %s in log line %q", re, line)
	}
	return m[1]
}

// ppCoalesceConn holds back what is written to it until the next write,
// and sends both in one write: the PROXY header and the ClientHello then
// reach sluice together, so they land in the same read.
type ppCoalesceConn struct {
	net.Conn
	pending []byte
}

func (c *ppCoalesceConn) Write(p []byte) (int, error) {
	if c.pending == nil {
		return c.Conn.Write(p)
	}
	buf := append(c.pending, p...)
	c.pending = nil
	if _, err := c.Conn.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ppDial opens a TCP conn to addr with the test deadline, closed at
// cleanup.
func ppDial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// ppDialTLS sends hdr on a new conn to addr and then handshakes TLS as a
// client of the test CA for "localhost". With coalesce, hdr goes out in
// the same write as the ClientHello.
func ppDialTLS(w *world, addr string, hdr []byte, coalesce bool) (*tls.Conn, error) {
	w.t.Helper()
	raw := ppDial(w.t, addr)
	var nc net.Conn = raw
	if coalesce {
		nc = &ppCoalesceConn{Conn: raw, pending: hdr}
	} else if _, err := raw.Write(hdr); err != nil {
		return nil, err
	}
	tc := tls.Client(nc, &tls.Config{ServerName: "localhost", RootCAs: w.pool})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

func ppFormat(t *testing.T, h *proxyproto.Header) []byte {
	t.Helper()
	b, err := h.Format()
	if err != nil {
		t.Fatalf("format PROXY header: %v", err)
	}
	return b
}

var (
	ppSrc = &net.TCPAddr{IP: net.IPv4(203, 0, 113, 9), Port: 4444}
	ppDst = &net.TCPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 443}
)

// ppProxyInConfig is a TLS listener that requires PROXY headers from
// trusted, with an upstream that is sent PROXY sendProxy.
func ppProxyInConfig(w *world, server, sendProxy string, trusted ...string) *Config {
	cfg := w.simple(server)
	cfg.Listeners[0].AcceptProxy = true
	cfg.Listeners[0].TrustedProxies = trusted
	cfg.Upstreams[0].SendProxy = sendProxy
	return cfg
}

func TestProxyOut(t *testing.T) {
	const sni = "app.example.test"
	for _, tc := range []struct {
		name      string
		sendProxy string
		mtls      bool
	}{
		{name: "v1", sendProxy: "v1"},
		{name: "v2", sendProxy: "v2"},
		{name: "v2 mTLS", sendProxy: "v2", mtls: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			b, got := ppBackend(w)
			cfg := w.simple(b.addr())
			lt := cfg.Listeners[0].TLS
			lt.Certificates = append(lt.Certificates, w.cert(sni))
			lt.ALPN = []string{"h2", "http/1.1"}
			cfg.Upstreams[0].Protocols = lt.ALPN
			cfg.Upstreams[0].SendProxy = tc.sendProxy
			ccfg := &tls.Config{ServerName: sni, NextProtos: []string{"http/1.1"}}
			if tc.mtls {
				caPath, issueClient := w.clientCA()
				lt.ClientCA = caPath
				lt.ClientAuth = "require"
				ccfg.Certificates = []tls.Certificate{issueClient("alice")}
			}
			_, addrs := w.serve(cfg)

			c := w.mustDialTLS(addrs[0], ccfg)
			client := c.LocalAddr().String()
			cs := c.ConnectionState()
			ppEcho(t, c, "application bytes after the header")
			h := ppHeader(t, got)
			c.Close()
			line := ppAccessLine(w, client)

			if got, want := int(h.Version), int(tc.sendProxy[1]-'0'); got != want {
				t.Errorf("header version %d, want %d", got, want)
			}
			if !h.Command.IsProxy() {
				t.Errorf("command %v, want PROXY", h.Command)
			}
			if h.SourceAddr == nil || h.SourceAddr.String() != client {
				t.Errorf("source %v, want the client %s", h.SourceAddr, client)
			}
			if h.DestinationAddr == nil || h.DestinationAddr.String() != addrs[0] {
				t.Errorf("destination %v, want the listener %s", h.DestinationAddr, addrs[0])
			}

			tlvs := ppTLVs(t, h)
			if tc.sendProxy == "v1" {
				if len(tlvs) != 0 {
					t.Errorf("v1 header has TLVs: %v", tlvs)
				}
				return
			}

			if got := string(tlvs[proxyproto.PP2_TYPE_AUTHORITY]); got != sni {
				t.Errorf("AUTHORITY %q, want %q", got, sni)
			}
			if cs.NegotiatedProtocol != "http/1.1" {
				t.Fatalf("client negotiated %q, want http/1.1", cs.NegotiatedProtocol)
			}
			if got := string(tlvs[proxyproto.PP2_TYPE_ALPN]); got != cs.NegotiatedProtocol {
				t.Errorf("ALPN %q, want %q", got, cs.NegotiatedProtocol)
			}
			if got, want := string(tlvs[proxyproto.PP2_TYPE_UNIQUE_ID]), ppLogField(t, ppConnID, line); got != want {
				t.Errorf("UNIQUE_ID %q, want the access log's conn=%s", got, want)
			}

			rawTLVs, _ := h.TLVs()
			ssl, ok := tlvparse.FindSSL(rawTLVs)
			if !ok {
				t.Fatal("no PP2_TYPE_SSL TLV")
			}
			if !ssl.ClientSSL() {
				t.Error("SSL TLV: CLIENT_SSL not set")
			}
			if cs.Version != tls.VersionTLS13 {
				t.Fatalf("client negotiated version 0x%04x, want TLS 1.3", cs.Version)
			}
			if v, _ := ssl.SSLVersion(); v != "TLSv1.3" {
				t.Errorf("SSL version %q, want TLSv1.3", v)
			}
			if v, want := ppSSLCipher(ssl), tls.CipherSuiteName(cs.CipherSuite); v != want {
				t.Errorf("SSL cipher %q, want %q", v, want)
			}
			cn, hasCN := ssl.ClientCN()
			if tc.mtls {
				if !ssl.Verified() || !ssl.ClientCertConn() {
					t.Errorf("SSL TLV: verified %v, cert_conn %v; want both with a verified client certificate", ssl.Verified(), ssl.ClientCertConn())
				}
				if cn != "alice" {
					t.Errorf("SSL CN %q, want alice", cn)
				}
				if !strings.Contains(line, " client_cn=alice ") {
					t.Errorf("access log lacks client_cn=alice: %s", line)
				}
			} else {
				if ssl.Verified() || ssl.ClientCertConn() {
					t.Errorf("SSL TLV: verified %v, cert_conn %v; want neither without a client certificate", ssl.Verified(), ssl.ClientCertConn())
				}
				if hasCN {
					t.Errorf("SSL CN %q without a client certificate", cn)
				}
			}
		})
	}
}

func ppSSLCipher(s tlvparse.PP2SSL) string {
	v, _ := s.SSLCipher()
	return v
}

func TestProxyIn(t *testing.T) {
	for _, tc := range []struct {
		name     string
		version  byte
		coalesce bool // header and ClientHello in one write
	}{
		{name: "v2", version: 2},
		{name: "v1", version: 1},
		{name: "v2 with ClientHello in the same write", version: 2, coalesce: true},
		{name: "v1 with ClientHello in the same write", version: 1, coalesce: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			b, got := ppBackend(w)
			_, addrs := w.serve(ppProxyInConfig(w, b.addr(), "v2", "127.0.0.0/8"))

			hdr := ppFormat(t, proxyproto.HeaderProxyFromAddrs(tc.version, ppSrc, ppDst))
			c, err := ppDialTLS(w, addrs[0], hdr, tc.coalesce)
			if err != nil {
				t.Fatalf("handshake after PROXY header: %v", err)
			}
			ppEcho(t, c, "hello through a load balancer")
			h := ppHeader(t, got)
			if h.SourceAddr.String() != ppSrc.String() || h.DestinationAddr.String() != ppDst.String() {
				t.Errorf("backend header %v → %v, want %v → %v", h.SourceAddr, h.DestinationAddr, ppSrc, ppDst)
			}
			c.Close()
			ppAccessLine(w, ppSrc.String())
		})
	}
}

func TestProxyInUntrusted(t *testing.T) {
	w := newWorld(t)
	b, _ := ppBackend(w)
	_, addrs := w.serve(ppProxyInConfig(w, b.addr(), "v2", "192.0.2.0/24"))

	hdr := ppFormat(t, proxyproto.HeaderProxyFromAddrs(2, ppSrc, ppDst))
	if c, err := ppDialTLS(w, addrs[0], hdr, false); err == nil {
		c.Close()
		t.Fatal("handshake succeeded from an untrusted peer")
	}
	// The socket's address, not the header's: the header is not believed.
	line := w.waitLog("msg=access", "reason=untrusted_proxy", "client=127.0.0.1:")
	for _, f := range []string{"route=", "server=", "sni="} {
		if strings.Contains(line, " "+f) {
			t.Errorf("untrusted conn got as far as %s: %s", f, line)
		}
	}
	select {
	case c := <-b.conns:
		t.Errorf("backend got a connection from %v", c.RemoteAddr())
	default:
	}
}

func TestProxyInBadHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		// send writes to the raw conn; nil tries a TLS handshake instead.
		send    []byte
		errPart string // in the access log's error
	}{
		// Not a timeout, so the error must not claim one.
		{name: "no header, ClientHello first", errPart: `error="l4: no PROXY header: the connection starts with other data`},
		{name: "garbage", send: []byte("PROXY TCP9 203.0.113.9 198.51.100.1 4444 443\r\n"), errPart: `error="read PROXY header: proxyproto:`},
		{name: "too slow", timeout: 100 * time.Millisecond, send: []byte{}, errPart: `error="l4: no PROXY header within 100ms"`},
		{name: "stalls inside the signature", timeout: 100 * time.Millisecond, send: []byte("PROX"), errPart: `error="l4: no PROXY header within 100ms"`},
		{name: "partial v1 header", send: []byte("PROXY TCP4 203.0.113.9 "), errPart: `error="read PROXY header: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			b, _ := ppBackend(w)
			cfg := ppProxyInConfig(w, b.addr(), "v2", "127.0.0.0/8")
			cfg.Listeners[0].ProxyTimeout = Duration{tc.timeout}
			_, addrs := w.serve(cfg)

			var client string
			if tc.send == nil {
				c, err := w.dialTLS(addrs[0], nil)
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded without a PROXY header")
				}
				client = "127.0.0.1:" // dialTLS does not expose the conn
			} else {
				c := ppDial(t, addrs[0])
				client = c.LocalAddr().String() + " "
				if _, err := c.Write(tc.send); err != nil {
					t.Fatalf("write: %v", err)
				}
				expectClosed(t, c)
			}
			line := w.waitLog("msg=access", "client="+client, "reason=proxy_header")
			if !strings.Contains(line, tc.errPart) {
				t.Errorf("access log error lacks %q: %s", tc.errPart, line)
			}
			select {
			case c := <-b.conns:
				t.Errorf("backend got a connection from %v", c.RemoteAddr())
			default:
			}
		})
	}
}

func TestProxyInLocal(t *testing.T) {
	w := newWorld(t)
	b, got := ppBackend(w)
	_, addrs := w.serve(ppProxyInConfig(w, b.addr(), "v2", "127.0.0.0/8"))

	local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	c, err := ppDialTLS(w, addrs[0], ppFormat(t, local), false)
	if err != nil {
		t.Fatalf("handshake after PROXY LOCAL: %v", err)
	}
	client := c.LocalAddr().String()
	ppEcho(t, c, "health check")
	h := ppHeader(t, got)
	if h.SourceAddr == nil || h.SourceAddr.String() != client {
		t.Errorf("backend header source %v, want the real peer %s", h.SourceAddr, client)
	}
	if h.DestinationAddr == nil || h.DestinationAddr.String() != addrs[0] {
		t.Errorf("backend header destination %v, want the listener %s", h.DestinationAddr, addrs[0])
	}
	c.Close()
	ppAccessLine(w, client)
}

func TestProxyInPlain(t *testing.T) {
	w := newWorld(t)
	b, got := ppBackend(w)
	_, addrs := w.serve(&Config{
		Listeners: []ListenerConfig{{
			Name:           "plain",
			AcceptProxy:    true,
			TrustedProxies: []string{"127.0.0.1"},
			Routes:         []RouteConfig{{Name: "default", Upstream: "app"}},
		}},
		Upstreams: []UpstreamConfig{{Name: "app", Servers: []string{b.addr()}, SendProxy: "v1"}},
	})

	c := ppDial(t, addrs[0])
	// Header and payload in one write: the payload is replayed from the
	// buffer that read the header.
	payload := "plain bytes behind a PROXY v1 header\n"
	msg := append(ppFormat(t, proxyproto.HeaderProxyFromAddrs(1, ppSrc, ppDst)), payload...)
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
	if got := string(readAll(t, c)); got != payload {
		t.Errorf("echo %q, want %q", got, payload)
	}
	h := ppHeader(t, got)
	if h.Version != 1 || h.SourceAddr.String() != ppSrc.String() || h.DestinationAddr.String() != ppDst.String() {
		t.Errorf("backend header v%d %v → %v, want v1 %v → %v", h.Version, h.SourceAddr, h.DestinationAddr, ppSrc, ppDst)
	}
	ppAccessLine(w, ppSrc.String(), "listener=plain")
}

func TestTrusted(t *testing.T) {
	prefixes := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			p, err := parsePrefix(s)
			if err != nil {
				t.Fatalf("parsePrefix(%q): %v", s, err)
			}
			out = append(out, p)
		}
		return out
	}
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 1234} }
	for _, tc := range []struct {
		name     string
		addr     net.Addr
		prefixes []netip.Prefix
		want     bool
	}{
		{"IPv4 in CIDR", tcp("10.1.2.3"), prefixes("10.0.0.0/8"), true},
		{"IPv4 outside CIDR", tcp("11.1.2.3"), prefixes("10.0.0.0/8"), false},
		{"IPv4 in second CIDR", tcp("192.0.2.7"), prefixes("10.0.0.0/8", "192.0.2.0/24"), true},
		{"IPv4 as 4 bytes", &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3).To4()}, prefixes("10.0.0.0/8"), true},
		{"IPv6 in CIDR", tcp("2001:db8::1"), prefixes("2001:db8::/32"), true},
		{"IPv6 outside CIDR", tcp("2001:db9::1"), prefixes("2001:db8::/32"), false},
		{"IPv6 link-local with zone", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0"}, prefixes("fe80::/10"), true},
		{"IPv4-mapped IPv6 against IPv4 CIDR", tcp("::ffff:10.1.2.3"), prefixes("10.0.0.0/8"), true},
		{"IPv4-mapped IPv6 outside IPv4 CIDR", tcp("::ffff:11.1.2.3"), prefixes("10.0.0.0/8"), false},
		{"IPv4 against IPv6 CIDR", tcp("10.1.2.3"), prefixes("::/0"), false},
		{"single address", tcp("127.0.0.1"), prefixes("127.0.0.1"), true},
		{"next to single address", tcp("127.0.0.2"), prefixes("127.0.0.1"), false},
		{"single IPv6 address", tcp("::1"), prefixes("::1"), true},
		{"non-canonical CIDR", tcp("10.9.9.9"), prefixes("10.1.2.3/8"), true},
		{"no prefixes", tcp("127.0.0.1"), nil, false},
		{"unix socket", &net.UnixAddr{Name: "/run/sluice.sock", Net: "unix"}, nil, true},
		{"UDP address", &net.UDPAddr{IP: net.ParseIP("127.0.0.1")}, prefixes("127.0.0.0/8"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := trusted(tc.addr, tc.prefixes); got != tc.want {
				t.Errorf("trusted(%v, %v) = %v, want %v", tc.addr, tc.prefixes, got, tc.want)
			}
		})
	}
}

// TestProxyInGarbageAfterHeader: a valid PROXY header followed by bytes
// that are not TLS ends that connection with the next phase's reason,
// under the header's client address, and the listener serves the next
// client.
func TestProxyInGarbageAfterHeader(t *testing.T) {
	for _, tc := range []struct {
		name        string
		passthrough bool
		reason      string
	}{
		{"terminate", false, "reason=handshake"},
		// A stream that is not TLS goes to a passthrough listener's plain
		// routes, and this one has none.
		{"passthrough", true, `reason=no_route error="l4: no route: the stream is not TLS`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			b, got := ppBackend(w)
			cfg := ppProxyInConfig(w, b.addr(), "v2", "127.0.0.0/8")
			if tc.passthrough {
				l := &cfg.Listeners[0]
				l.TLS = nil
				l.Routes = []RouteConfig{{Name: "pass", Mode: "passthrough", Upstream: cfg.Upstreams[0].Name}}
			}
			_, addrs := w.serve(cfg)

			c := ppDial(t, addrs[0])
			garbage := append(ppFormat(t, proxyproto.HeaderProxyFromAddrs(2, ppSrc, ppDst)), "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff"...)
			if _, err := c.Write(garbage); err != nil {
				t.Fatalf("write: %v", err)
			}
			expectClosed(t, c)
			w.waitLog("msg=access", "client="+ppSrc.String(), tc.reason)
			select {
			case bc := <-b.conns:
				t.Errorf("backend got a connection from %v", bc.RemoteAddr())
			default:
			}
			if tc.passthrough {
				return // the backend speaks no TLS: the next client is TestPassthroughBadHello's
			}
			// The next client is served.
			tc, err := ppDialTLS(w, addrs[0], ppFormat(t, proxyproto.HeaderProxyFromAddrs(2, ppSrc, ppDst)), false)
			if err != nil {
				t.Fatalf("handshake after a client's garbage: %v", err)
			}
			defer tc.Close()
			ppEcho(t, tc, "still serving")
			ppHeader(t, got)
		})
	}
}

// TestProxyInDatagramRefused: a PROXY v2 header that announces a UDP
// connection on a TCP listener is refused, and one announcing a unix
// stream (HAProxy's, for a client of its own unix socket) is accepted.
func TestProxyInDatagramRefused(t *testing.T) {
	w := newWorld(t)
	b, got := ppBackend(w)
	_, addrs := w.serve(ppProxyInConfig(w, b.addr(), "v2", "127.0.0.0/8"))

	udp := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UDPv4,
		SourceAddr: &net.UDPAddr{IP: ppSrc.IP, Port: ppSrc.Port}, DestinationAddr: &net.UDPAddr{IP: ppDst.IP, Port: ppDst.Port}}
	c := ppDial(t, addrs[0])
	if _, err := c.Write(ppFormat(t, udp)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	line := w.waitLog("msg=access", "reason=proxy_header")
	if want := `error="read PROXY header: it announces a datagram connection`; !strings.Contains(line, want) {
		t.Errorf("access line lacks %q: %s", want, line)
	}

	unix := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UnixStream,
		SourceAddr: &net.UnixAddr{Net: "unix", Name: "/run/client.sock"}, DestinationAddr: &net.UnixAddr{Net: "unix", Name: "/run/haproxy.sock"}}
	tc, err := ppDialTLS(w, addrs[0], ppFormat(t, unix), false)
	if err != nil {
		t.Fatalf("handshake after a unix-stream header: %v", err)
	}
	defer tc.Close()
	ppEcho(t, tc, "unix stream")
	ppHeader(t, got)
}
