package l4

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestEchoThroughTLS(t *testing.T) {
	w := newWorld(t)
	b := w.backend(echo)
	_, addrs := w.serve(w.simple(b.addr()))

	c := w.mustDialTLS(addrs[0], nil)
	payload := bytes.Repeat([]byte("sluice "), 100_000) // 700 kB, several records
	go func() {
		c.Write(payload)
		c.CloseWrite()
	}()
	got := readAll(t, c)
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo: got %d bytes, want %d", len(got), len(payload))
	}
	line := w.waitLog("msg=access", "route=default")
	for _, want := range []string{"listener=test", "sni=localhost", "tls=TLSv1.3", "cipher=TLS_", "upstream=app",
		"server=" + b.addr(), "bytes_in=700000", "bytes_out=700000", "reason=client_closed", "level=INFO"} {
		if !strings.Contains(line, want) {
			t.Errorf("access line lacks %q: %s", want, line)
		}
	}
}

func TestSNICertificateAndRoute(t *testing.T) {
	w := newWorld(t)
	cfg := &Config{
		Listeners: []ListenerConfig{{
			Name: "sni",
			TLS: &TLSConfig{Certificates: []CertConfig{
				w.cert("default.test"),
				w.cert("*.example.com"),
				w.cert("a.example.com"),
			}},
			Routes: []RouteConfig{
				{Name: "a", SNI: []string{"a.example.com"}, Upstream: "a"},
				{Name: "wild", SNI: []string{"*.example.com"}, Upstream: "wild"},
				{Name: "fallback", Upstream: "fallback"},
			},
		}},
		Upstreams: []UpstreamConfig{
			{Name: "a", Servers: []string{w.backend(tagged("a")).addr()}},
			{Name: "wild", Servers: []string{w.backend(tagged("wild")).addr()}},
			{Name: "fallback", Servers: []string{w.backend(tagged("fallback")).addr()}},
		},
	}
	_, addrs := w.serve(cfg)
	for _, tc := range []struct {
		name, sni, wantCert, wantRoute string
	}{
		{"exact", "a.example.com", "a.example.com", "a"},
		{"exact upper case", "A.Example.COM", "a.example.com", "a"},
		{"wildcard", "b.example.com", "*.example.com", "wild"},
		{"wildcard covers one label only", "x.b.example.com", "default.test", "fallback"},
		{"unknown name gets default", "other.test", "default.test", "fallback"},
		{"no SNI gets default", "", "default.test", "fallback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true}
			if tc.sni == "" {
				// No ServerName means no SNI; verify by hand below.
				cfg.ServerName = ""
			}
			c, err := tls.Dial("tcp", addrs[0], cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testTimeout))
			if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != tc.wantCert {
				t.Errorf("certificate: got %q, want %q", got, tc.wantCert)
			}
			if got := readLine(t, c); got != tc.wantRoute {
				t.Errorf("route: got %q, want %q", got, tc.wantRoute)
			}
		})
	}
}

func TestALPNRoute(t *testing.T) {
	w := newWorld(t)
	cfg := &Config{
		Listeners: []ListenerConfig{{
			TLS: &TLSConfig{Certificates: []CertConfig{w.cert("localhost")}, ALPN: []string{"h2", "http/1.1"}},
			Routes: []RouteConfig{
				{Name: "h2", ALPN: []string{"h2"}, Upstream: "h2"},
				{Name: "rest", Upstream: "rest"},
			},
		}},
		Upstreams: []UpstreamConfig{
			{Name: "h2", Servers: []string{w.backend(tagged("h2")).addr()}, Protocols: []string{"h2"}},
			{Name: "rest", Servers: []string{w.backend(tagged("rest")).addr()}, Protocols: []string{"http/1.1"}},
		},
	}
	_, addrs := w.serve(cfg)
	for _, tc := range []struct {
		offer []string
		alpn  string
		route string
	}{
		{[]string{"h2", "http/1.1"}, "h2", "h2"},
		{[]string{"http/1.1"}, "http/1.1", "rest"},
		{nil, "", "rest"},
	} {
		t.Run(strings.Join(tc.offer, ",")+"→"+tc.route, func(t *testing.T) {
			c := w.mustDialTLS(addrs[0], &tls.Config{NextProtos: tc.offer})
			if got := c.ConnectionState().NegotiatedProtocol; got != tc.alpn {
				t.Errorf("ALPN: got %q, want %q", got, tc.alpn)
			}
			if got := readLine(t, c); got != tc.route {
				t.Errorf("route: got %q, want %q", got, tc.route)
			}
		})
	}
}

func TestMutualTLS(t *testing.T) {
	w := newWorld(t)
	caPath, issueClient := w.clientCA()
	otherCA, otherKey := newCA(t, "other CA")
	mk := func(auth string) *Config {
		return &Config{
			Listeners: []ListenerConfig{{
				Name: auth,
				TLS:  &TLSConfig{Certificates: []CertConfig{w.cert("localhost")}, ClientCA: caPath, ClientAuth: auth},
				Routes: []RouteConfig{
					{Name: "admin", ClientCN: []string{"admin"}, Upstream: "admin"},
					{Name: "users", Upstream: "users"},
				},
			}},
			Upstreams: []UpstreamConfig{
				{Name: "admin", Servers: []string{w.backend(tagged("admin")).addr()}},
				{Name: "users", Servers: []string{w.backend(tagged("users")).addr()}},
			},
		}
	}
	_, req := w.serve(mk("require"))
	_, opt := w.serve(mk("request"))
	admin, alice := issueClient("admin"), issueClient("alice")
	stranger, _, _ := issue(t, otherCA, otherKey, "admin", nil, true)

	for _, tc := range []struct {
		name string
		cert []tls.Certificate
	}{
		{"require without certificate is refused", nil},
		{"require with a certificate from another CA is refused", []tls.Certificate{stranger}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := w.dialTLS(req[0], &tls.Config{Certificates: tc.cert})
			if err == nil {
				// TLS 1.3 reports the server's rejection on the first read.
				_, err = c.Read(make([]byte, 1))
			}
			if err == nil {
				t.Fatal("connection was accepted")
			}
		})
	}
	w.waitLog("msg=access", "listener=require", "reason=handshake")
	for _, tc := range []struct {
		name, addr string
		cert       *tls.Certificate
		route, cn  string
	}{
		{"require with admin certificate", req[0], &admin, "admin", "client_cn=admin"},
		{"require with alice certificate", req[0], &alice, "users", "client_cn=alice"},
		{"request without certificate", opt[0], nil, "users", ""},
		{"request with admin certificate", opt[0], &admin, "admin", "client_cn=admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{}
			if tc.cert != nil {
				cfg.Certificates = []tls.Certificate{*tc.cert}
			}
			c := w.mustDialTLS(tc.addr, cfg)
			if got := readLine(t, c); got != tc.route {
				t.Errorf("route: got %q, want %q", got, tc.route)
			}
			c.Close()
			if tc.cn != "" {
				w.waitLog("msg=access", "route="+tc.route, tc.cn)
			}
		})
	}
}

func TestNoRouteClosesAndLogs(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].Routes[0].SNI = []string{"only.example.com"}
	_, addrs := w.serve(cfg)
	c := w.mustDialTLS(addrs[0], nil)
	expectClosed(t, c)
	w.waitLog("msg=access", "sni=localhost", "reason=no_route", "error=\"l4: no route\"")
}

func TestHandshakeTimeout(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].HandshakeTimeout = Duration{100 * time.Millisecond}
	_, addrs := w.serve(cfg)
	c, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Half a ClientHello record header, then silence.
	c.Write([]byte{0x16, 0x03})
	expectClosed(t, c)
	w.waitLog("msg=access", "reason=handshake", "timed out")
}

func TestHalfCloseThroughTLS(t *testing.T) {
	w := newWorld(t)
	request := []byte("the whole request")
	response := bytes.Repeat([]byte("response "), 50_000)
	got := make(chan []byte, 1)
	b := w.backend(func(c net.Conn) {
		// Read to EOF: only the client's half-close ends the request.
		req, _ := io.ReadAll(c)
		got <- req
		c.Write(response)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	})
	_, addrs := w.serve(w.simple(b.addr()))
	c := w.mustDialTLS(addrs[0], nil)
	c.Write(request)
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The close_notify is not enough for the backend: sluice must turn
	// it into a TCP FIN. The raw conn's FIN follows, as a real client's.
	c.NetConn().(*net.TCPConn).CloseWrite()
	if req := <-got; !bytes.Equal(req, request) {
		t.Fatalf("backend got %q", req)
	}
	// The backend's FIN comes back as close_notify: a clean io.EOF.
	if resp := readAll(t, c); !bytes.Equal(resp, response) {
		t.Fatalf("client got %d bytes, want %d", len(resp), len(response))
	}
	w.waitLog("msg=access", "reason=client_closed", "bytes_out=450000")
}

func TestBackendHalfCloseReachesClient(t *testing.T) {
	w := newWorld(t)
	b := w.backend(func(c net.Conn) {
		io.WriteString(c, "greeting")
		c.(*net.TCPConn).CloseWrite()
		// Keep reading: the client may still talk.
		io.Copy(io.Discard, c)
	})
	_, addrs := w.serve(w.simple(b.addr()))
	c := w.mustDialTLS(addrs[0], nil)
	if got := readAll(t, c); string(got) != "greeting" {
		t.Fatalf("got %q", got)
	}
	// After close_notify, the TCP FIN: the raw socket reads EOF too.
	raw := c.NetConn()
	raw.SetReadDeadline(time.Now().Add(testTimeout))
	if n, err := raw.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("raw read after close_notify: %d, %v; want EOF", n, err)
	}
	// The client's direction still works until it closes.
	if _, err := c.Write([]byte("late words")); err != nil {
		t.Fatalf("write after backend half-close: %v", err)
	}
	c.Close()
	w.waitLog("msg=access", "reason=backend_closed", "bytes_in=10")
}

func TestIdleTimeout(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].IdleTimeout = Duration{150 * time.Millisecond}
	_, addrs := w.serve(cfg)
	c := w.mustDialTLS(addrs[0], nil)
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	w.waitLog("msg=access", "reason=idle_timeout", "bytes_in=4", "bytes_out=4")
}

func TestPlainListener(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].TLS = nil
	_, addrs := w.serve(cfg)
	c, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("plain bytes"))
	c.(*net.TCPConn).CloseWrite()
	if got := readAll(t, c); string(got) != "plain bytes" {
		t.Fatalf("got %q", got)
	}
}

// TestWarnUncoveredSNI: a route for a server name no certificate covers
// builds (it may be meant) but is worth a warning that names the key.
func TestWarnUncoveredSNI(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].TLS.Certificates = append(cfg.Listeners[0].TLS.Certificates, w.cert("*.example.com"))
	cfg.Listeners[0].Routes = []RouteConfig{
		{Name: "covered", SNI: []string{"a.example.com", "localhost"}, Upstream: "app"},
		{Name: "uncovered", SNI: []string{"api.example.net"}, Upstream: "app"},
	}
	w.serve(cfg)
	line := w.waitLog("level=WARN", "no certificate covers a routed server name")
	for _, want := range []string{"key=listener[0].route[1].sni[0]", "sni=api.example.net"} {
		if !strings.Contains(line, want) {
			t.Errorf("warning lacks %q: %s", want, line)
		}
	}
	if n := strings.Count(w.logs.String(), "no certificate covers"); n != 1 {
		t.Errorf("%d warnings, want 1 (for api.example.net only)", n)
	}
}

// TestALPNPerClient: each client is offered only the protocols the route it
// can take carries. Routes narrowed by SNI decide at the ClientHello; where
// a WebSocket peek decides after the handshake, the offer is what every
// candidate carries; a client none of whose protocols can be carried gets
// the no_application_protocol alert and a log line that says so.
func TestALPNPerClient(t *testing.T) {
	w := newWorld(t)
	yes := true
	cfg := &Config{
		Listeners: []ListenerConfig{{
			TLS: &TLSConfig{
				Certificates: []CertConfig{w.cert("localhost", "h2.test", "h1.test", "ws.test")},
				ALPN:         []string{"h2", "http/1.1"},
			},
			Routes: []RouteConfig{
				{Name: "h2", SNI: []string{"h2.test"}, ALPN: []string{"h2"}, Upstream: "h2"},
				{Name: "ws", SNI: []string{"ws.test"}, WebSocket: &yes, Upstream: "h1"},
				{Name: "both", SNI: []string{"h2.test", "ws.test"}, Upstream: "both"},
				{Name: "rest", Upstream: "h1"},
			},
		}},
		Upstreams: []UpstreamConfig{
			{Name: "h2", Servers: []string{w.backend(tagged("h2")).addr()}, Protocols: []string{"h2"}},
			{Name: "both", Servers: []string{w.backend(tagged("both")).addr()}, Protocols: []string{"h2", "http/1.1"}},
			{Name: "h1", Servers: []string{w.backend(tagged("h1")).addr()}, Protocols: []string{"http/1.1"}},
		},
	}
	_, addrs := w.serve(cfg)
	for _, tc := range []struct {
		sni   string
		offer []string
		alpn  string // "": none negotiated; "alert": the handshake fails
		up    string // the upstream that answers
	}{
		{"h2.test", []string{"h2", "http/1.1"}, "h2", "h2"},
		{"h2.test", []string{"http/1.1"}, "http/1.1", "both"},
		{"h1.test", []string{"h2", "http/1.1"}, "http/1.1", "h1"},
		{"h1.test", []string{"h2"}, "alert", ""},
		{"h1.test", nil, "", "h1"},
		// ws.test: "ws" or "both" after the peek; only http/1.1 suits both.
		{"ws.test", []string{"h2", "http/1.1"}, "http/1.1", "both"},
		{"ws.test", []string{"h2"}, "alert", ""},
	} {
		t.Run(tc.sni+"/"+strings.Join(tc.offer, ","), func(t *testing.T) {
			c, err := w.dialTLS(addrs[0], &tls.Config{ServerName: tc.sni, NextProtos: tc.offer})
			if tc.alpn == "alert" {
				if err == nil || !strings.Contains(err.Error(), "no application protocol") {
					t.Fatalf("handshake: %v, want the no_application_protocol alert", err)
				}
				w.waitLog("msg=access", "reason=no_application_protocol")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.ConnectionState().NegotiatedProtocol; got != tc.alpn {
				t.Errorf("ALPN: got %q, want %q", got, tc.alpn)
			}
			if tc.sni == "ws.test" {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: ws.test\r\n\r\n") // not an upgrade
			}
			if got := readLine(t, c); got != tc.up {
				t.Errorf("upstream: got %q, want %q", got, tc.up)
			}
		})
	}
}

// TestCheckALPN: tls.alpn entries no client could ever negotiate, and
// routes that match a protocol their upstream does not speak, are
// configuration errors naming the key.
func TestCheckALPN(t *testing.T) {
	for _, tc := range []struct {
		name   string
		alpn   []string
		routes []RouteConfig
		protos map[string][]string
		want   []string // substrings, one per error; none: valid
	}{
		{"all carried", []string{"h2", "http/1.1"}, []RouteConfig{{Upstream: "a"}},
			map[string][]string{"a": {"h2", "http/1.1"}}, nil},
		{"narrowed by sni", []string{"h2", "http/1.1"},
			[]RouteConfig{{SNI: []string{"h2.test"}, Upstream: "a"}, {Upstream: "b"}},
			map[string][]string{"a": {"h2", "http/1.1"}, "b": {"http/1.1"}}, nil},
		{"upstream speaks none", []string{"http/1.1"}, []RouteConfig{{Upstream: "a"}},
			map[string][]string{}, []string{`listener[0].tls.alpn[0]: "http/1.1" is offered but could never be negotiated`}},
		{"route alpn the upstream lacks", []string{"h2", "http/1.1"},
			[]RouteConfig{{ALPN: []string{"h2"}, Upstream: "b"}, {Upstream: "a"}},
			map[string][]string{"a": {"h2", "http/1.1"}, "b": {"http/1.1"}},
			[]string{
				`listener[0].route[0].alpn[0]: route "l#0" matches "h2", but its upstream "b" does not speak it`,
				`listener[0].tls.alpn[0]: "h2" is offered but could never be negotiated: the routes a client could take with it send to upstreams that do not list it in protocols (route "l#0" → upstream "b")`,
			}},
		{"no alpn offered: any upstream", nil, []RouteConfig{{Upstream: "a"}}, map[string][]string{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{Listeners: []ListenerConfig{{Name: "l", Address: "127.0.0.1:0",
				TLS: &TLSConfig{ALPN: tc.alpn}, Routes: tc.routes}}}
			for _, u := range []string{"a", "b"} {
				cfg.Upstreams = append(cfg.Upstreams, UpstreamConfig{Name: u, Servers: []string{"127.0.0.1:1"}, Protocols: tc.protos[u]})
			}
			err := cfg.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors, want %d: %v", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("error %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
