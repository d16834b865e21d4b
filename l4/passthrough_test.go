package l4

import (
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tlsBackend is a backend that terminates TLS itself with a certificate
// for name from the test CA, writes name and a newline, then echoes.
func (w *world) tlsBackend(name string) *backend {
	w.t.Helper()
	cert, _, _ := issue(w.t, w.ca, w.caKey, name, []string{name}, false)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	return w.backend(func(c net.Conn) {
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(testTimeout))
		if err := tc.Handshake(); err != nil {
			return
		}
		io.WriteString(tc, name+"\n")
		io.Copy(tc, tc)
		tc.CloseWrite()
	})
}

func passthroughConfig(listenerTLS *TLSConfig, routes []RouteConfig, ups ...UpstreamConfig) *Config {
	return &Config{
		Listeners: []ListenerConfig{{Name: "pass", TLS: listenerTLS, Routes: routes}},
		Upstreams: ups,
	}
}

// TestPassthroughRoutesBySNI: a listener without TLS of its own routes by
// the ClientHello's server name, and the backend's own certificate is the
// one the client verifies: sluice did not terminate.
func TestPassthroughRoutesBySNI(t *testing.T) {
	w := newWorld(t)
	a, b := w.tlsBackend("a.example"), w.tlsBackend("b.example")
	_, addrs := w.serve(passthroughConfig(nil, []RouteConfig{
		{Name: "a", SNI: []string{"a.example"}, Mode: "passthrough", Upstream: "a"},
		{Name: "b", SNI: []string{"*.example"}, ALPN: []string{"x-b"}, Mode: "passthrough", Upstream: "b"},
	}, UpstreamConfig{Name: "a", Servers: []string{a.addr()}}, UpstreamConfig{Name: "b", Servers: []string{b.addr()}}))

	for _, tc := range []struct{ sni, alpn, want string }{
		{"a.example", "", "a.example"},
		{"b.example", "x-b", "b.example"},
	} {
		t.Run(tc.sni, func(t *testing.T) {
			cfg := &tls.Config{ServerName: tc.sni}
			if tc.alpn != "" {
				cfg.NextProtos = []string{"h2", tc.alpn}
			}
			c := w.mustDialTLS(addrs[0], cfg)
			if got := readLine(t, c); got != tc.want {
				t.Fatalf("backend said %q, want %q", got, tc.want)
			}
			c.Write([]byte("ping\n"))
			if got := readLine(t, c); got != "ping" {
				t.Fatalf("echo %q", got)
			}
			c.Close()
			w.waitLog("mode=passthrough", "sni="+tc.sni)
		})
	}
	t.Run("no_route", func(t *testing.T) {
		// b.example without the ALPN route b asks for matches nothing.
		if _, err := w.dialTLS(addrs[0], &tls.Config{ServerName: "b.example"}); err == nil {
			t.Fatal("handshake succeeded without a route")
		}
		w.waitLog("reason=no_route")
	})
}

// TestPassthroughBesideTermination: on a TLS listener, one name is passed
// through to a backend with its own certificate, every other one is
// terminated by sluice.
func TestPassthroughBesideTermination(t *testing.T) {
	w := newWorld(t)
	pass := w.tlsBackend("pass.example")
	term := w.backend(tagged("terminated"))
	_, addrs := w.serve(passthroughConfig(
		&TLSConfig{Certificates: []CertConfig{w.cert("localhost")}},
		[]RouteConfig{
			{Name: "pass", SNI: []string{"pass.example"}, Mode: "passthrough", Upstream: "pass"},
			{Name: "term", Upstream: "term"},
		},
		UpstreamConfig{Name: "pass", Servers: []string{pass.addr()}},
		UpstreamConfig{Name: "term", Servers: []string{term.addr()}}))

	for _, tc := range []struct{ sni, want string }{
		{"pass.example", "pass.example"},
		{"localhost", "terminated"},
	} {
		c := w.mustDialTLS(addrs[0], &tls.Config{ServerName: tc.sni})
		if got := readLine(t, c); got != tc.want {
			t.Fatalf("%s reached %q, want %q", tc.sni, got, tc.want)
		}
		c.Close()
	}
}

// splitConn writes in chunks of at most n bytes, each its own TCP segment.
type splitConn struct {
	net.Conn
	n int
}

func (s splitConn) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		k := min(s.n, len(p))
		m, err := s.Conn.Write(p[:k])
		done += m
		if err != nil {
			return done, err
		}
		p = p[k:]
	}
	return done, nil
}

// TestPassthroughSplitHello: a ClientHello that arrives in many small TCP
// segments still routes.
// TestPassthroughSplitHello: a ClientHello in small segments, down to one
// byte each, is routed like a whole one.
func TestPassthroughSplitHello(t *testing.T) {
	for _, n := range []int{3, 1} {
		t.Run(strconv.Itoa(n)+" bytes a segment", func(t *testing.T) {
			w := newWorld(t)
			a := w.tlsBackend("a.example")
			_, addrs := w.serve(passthroughConfig(nil, []RouteConfig{
				{Name: "a", SNI: []string{"a.example"}, Mode: "passthrough", Upstream: "a"},
			}, UpstreamConfig{Name: "a", Servers: []string{a.addr()}}))
			raw, err := net.DialTimeout("tcp", addrs[0], testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			raw.(*net.TCPConn).SetNoDelay(true)
			raw.SetDeadline(time.Now().Add(testTimeout))
			c := tls.Client(splitConn{raw, n}, &tls.Config{ServerName: "a.example", RootCAs: w.pool})
			if err := c.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := readLine(t, c); got != "a.example" {
				t.Fatalf("backend said %q", got)
			}
			c.Close()
			w.waitLog("msg=access", "mode=passthrough", "route=a")
		})
	}
}

// TestPassthroughBadHello: what is not a usable ClientHello is refused with
// a log line, never a hang (the test deadline is the guard).
func TestPassthroughBadHello(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tls       bool
		send      string
		closeSend bool
		reason    string
	}{
		{"http_on_plain", false, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, "reason=no_route"},
		{"http_on_tls", true, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, "reason=client_hello"},
		{"oversize", true, "\x16\x03\x01\xff\xff", false, "reason=client_hello"},
		{"truncated", true, "\x16\x03\x01\x01\x00\x01\x00\x00\xfc\x03\x03", true, "reason=client_hello"},
		{"garbage", true, "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", false, "reason=client_hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			a := w.tlsBackend("a.example")
			var lt *TLSConfig
			if tc.tls {
				lt = &TLSConfig{Certificates: []CertConfig{w.cert("localhost")}}
			}
			_, addrs := w.serve(passthroughConfig(lt, []RouteConfig{
				{Name: "a", SNI: []string{"a.example"}, Mode: "passthrough", Upstream: "a"},
			}, UpstreamConfig{Name: "a", Servers: []string{a.addr()}}))
			c, err := net.DialTimeout("tcp", addrs[0], testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testTimeout))
			c.Write([]byte(tc.send))
			if tc.closeSend {
				c.(*net.TCPConn).CloseWrite()
			}
			expectClosed(t, c)
			line := w.waitLog(tc.reason)
			if !strings.Contains(line, "listener=pass") {
				t.Fatalf("log line %q does not name the listener", line)
			}
		})
	}
}
