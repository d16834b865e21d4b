package l4

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pires/go-proxyproto"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// These tests read the metrics as Prometheus would: WriteMetrics's output
// goes through Prometheus's own text parser, and the families and their
// types come from the # TYPE lines, which VictoriaMetrics/metrics writes
// only when asked to (as cmd/sluice does).

// exposition is one scrape: the text and its families by name.
type exposition struct {
	text string
	fams map[string]*dto.MetricFamily
}

// scrape writes p's metrics and parses them. It fails the test if the text
// does not parse or holds a series twice, which the parser lets through.
func scrape(t testing.TB, p *Proxy) exposition {
	t.Helper()
	metrics.ExposeMetadata(true)
	var buf bytes.Buffer
	p.WriteMetrics(&buf)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("parse the exposition: %v\n%s", err, buf.String())
	}
	for name, mf := range fams {
		seen := make(map[string]bool)
		for _, m := range mf.GetMetric() {
			k := labelString(m.GetLabel())
			if seen[k] {
				t.Fatalf("%s%s appears twice:\n%s", name, k, buf.String())
			}
			seen[k] = true
		}
	}
	return exposition{text: buf.String(), fams: fams}
}

// labelString formats label pairs, sorted by name, as {k="v",...}.
func labelString(lps []*dto.LabelPair) string {
	s := make([]string, 0, len(lps))
	for _, lp := range lps {
		s = append(s, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
	}
	slices.Sort(s)
	return "{" + strings.Join(s, ",") + "}"
}

// value returns the value of the series of family name whose labels are
// exactly kv (name, value, name, value...): a counter's or a gauge's
// value, a histogram's sample count (its _count). ok is false if there is
// no such series.
func (e exposition) value(name string, kv ...string) (v float64, ok bool) {
	want := make([]*dto.LabelPair, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		want = append(want, &dto.LabelPair{Name: &kv[i], Value: &kv[i+1]})
	}
	wantKey := labelString(want)
	mf := e.fams[name]
	for _, m := range mf.GetMetric() {
		if labelString(m.GetLabel()) != wantKey {
			continue
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		default:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// series describes a series for messages: name{k="v",...}.
func series(name string, kv ...string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", kv[i], kv[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

// expect asserts that a series exists with value want.
func (e exposition) expect(t testing.TB, want float64, name string, kv ...string) {
	t.Helper()
	got, ok := e.value(name, kv...)
	switch {
	case !ok:
		t.Errorf("no series %s in:\n%s", series(name, kv...), e.grep(name))
	case got != want:
		t.Errorf("%s = %v, want %v", series(name, kv...), got, want)
	}
}

// grep returns the exposition's lines that mention name, for messages.
func (e exposition) grep(name string) string {
	var lines []string
	for _, l := range strings.Split(e.text, "\n") {
		if strings.Contains(l, name) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// expectTypes asserts the type of each family named in types.
func (e exposition) expectTypes(t testing.TB, types map[string]dto.MetricType) {
	t.Helper()
	for name, want := range types {
		mf, ok := e.fams[name]
		if !ok {
			t.Errorf("no family %s", name)
			continue
		}
		if got := mf.GetType(); got != want {
			t.Errorf("%s has type %v, want %v", name, got, want)
		}
	}
}

// waitMetric scrapes p until the series has value want, and returns that
// scrape: connections end, and their counts land, asynchronously.
func waitMetric(t testing.TB, p *Proxy, want float64, name string, kv ...string) exposition {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		e := scrape(t, p)
		got, ok := e.value(name, kv...)
		if ok && got == want {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present: %v), want %v; its family:\n%s", series(name, kv...), got, ok, want, e.grep(name))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitClosed waits until n connections of listener have ended with route
// and reason, and none is open: the last of what a connection's end
// updates (see listenerMeter.ended), so that the scrape it returns holds
// all of their counts.
func waitClosed(t testing.TB, p *Proxy, n float64, listener, route, reason string) exposition {
	t.Helper()
	waitMetric(t, p, n, "sluice_connections_closed_total", "listener", listener, "route", route, "reason", reason)
	return waitMetric(t, p, 0, "sluice_listener_connections", "listener", listener)
}

// Families by type, as the design has them.
var (
	listenerTypes = map[string]dto.MetricType{
		"sluice_listener_connections":                dto.MetricType_GAUGE,
		"sluice_listener_max_connections":            dto.MetricType_GAUGE,
		"sluice_listener_accepted_connections_total": dto.MetricType_COUNTER,
		"sluice_listener_limit_reached_total":        dto.MetricType_COUNTER,
		"sluice_listener_received_bytes_total":       dto.MetricType_COUNTER,
		"sluice_listener_sent_bytes_total":           dto.MetricType_COUNTER,
		"sluice_listener_health_checks_total":        dto.MetricType_COUNTER,
		"sluice_connection_duration_seconds":         dto.MetricType_HISTOGRAM,
		"sluice_tls_handshake_failures_total":        dto.MetricType_COUNTER,
		"sluice_tls_handshake_duration_seconds":      dto.MetricType_HISTOGRAM,
		"sluice_relay_parked_directions":             dto.MetricType_GAUGE,
		"sluice_relay_pipes_in_use":                  dto.MetricType_GAUGE,
		"sluice_relay_pipes_open":                    dto.MetricType_GAUGE,
		"sluice_relay_buffers_in_use":                dto.MetricType_GAUGE,
	}
	upstreamTypes = map[string]dto.MetricType{
		"sluice_upstream_server_connections":       dto.MetricType_GAUGE,
		"sluice_upstream_server_connections_total": dto.MetricType_COUNTER,
		"sluice_upstream_connect_errors_total":     dto.MetricType_COUNTER,
		"sluice_upstream_connect_duration_seconds": dto.MetricType_HISTOGRAM,
		"sluice_upstream_server_up":                dto.MetricType_GAUGE,
		"sluice_upstream_server_ejections_total":   dto.MetricType_COUNTER,
	}
	// Families that appear once something happened.
	eventTypes = map[string]dto.MetricType{
		"sluice_connections_closed_total":                 dto.MetricType_COUNTER,
		"sluice_tls_handshakes_total":                     dto.MetricType_COUNTER,
		"sluice_tls_certificate_expiry_timestamp_seconds": dto.MetricType_GAUGE,
	}
)

// exchange writes msg through c, reads it back, half-closes and reads to
// the end: the relay ends with reason client_closed.
func exchange(t *testing.T, c *tls.Conn, msg []byte) {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %v (read %d bytes)", err, len(got))
	}
	// close_notify, then FIN, as a real client does: through a
	// passthrough route, only the FIN is an end.
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("close_notify: %v", err)
	}
	c.NetConn().(*net.TCPConn).CloseWrite()
	if rest := readAll(t, c); len(rest) != 0 {
		t.Fatalf("%d bytes after the echo", len(rest))
	}
	c.Close()
}

// TestMetricsTLSTraffic: N connections through a TLS listener, each
// echoing A bytes, are counted exactly, in every family that sees them.
func TestMetricsTLSTraffic(t *testing.T) {
	const n, size = 5, 3000
	w := newWorld(t)
	b := w.backend(echo)
	p, addrs := w.serve(w.simple(b.addr()))
	lst := []string{"listener", "test"}
	srv := []string{"upstream", "app", "server", b.addr()}

	// Before any traffic, every per-listener and per-server family is
	// there, at zero.
	e := scrape(t, p)
	e.expectTypes(t, listenerTypes)
	e.expectTypes(t, upstreamTypes)
	e.expect(t, 0, "sluice_listener_accepted_connections_total", lst...)
	for _, r := range hsFailReasons {
		e.expect(t, 0, "sluice_tls_handshake_failures_total", "listener", "test", "reason", r)
	}
	for _, r := range dialReasons {
		e.expect(t, 0, "sluice_upstream_connect_errors_total", append(srv, "reason", r)...)
	}
	e.expect(t, 1, "sluice_upstream_server_up", srv...)

	msg := bytes.Repeat([]byte("x"), size)
	cipher := ""
	for range n {
		c := w.mustDialTLS(addrs[0], nil)
		cs := c.ConnectionState()
		if cs.Version != tls.VersionTLS13 || cs.DidResume {
			t.Fatalf("version %x, resumed %v; want a full TLS 1.3 handshake", cs.Version, cs.DidResume)
		}
		cipher = tls.CipherSuiteName(cs.CipherSuite)
		exchange(t, c, msg)
	}

	e = waitClosed(t, p, n, "test", "default", "client_closed")
	e.expectTypes(t, listenerTypes)
	e.expectTypes(t, upstreamTypes)
	e.expectTypes(t, eventTypes)
	e.expect(t, n, "sluice_listener_accepted_connections_total", lst...)
	e.expect(t, n*size, "sluice_listener_received_bytes_total", lst...)
	e.expect(t, n*size, "sluice_listener_sent_bytes_total", lst...)
	e.expect(t, 0, "sluice_listener_connections", lst...)
	e.expect(t, 0, "sluice_listener_max_connections", lst...)
	e.expect(t, 0, "sluice_listener_limit_reached_total", lst...)
	e.expect(t, 0, "sluice_listener_health_checks_total", lst...)
	e.expect(t, n, "sluice_tls_handshakes_total", "listener", "test", "version", "TLSv1.3", "cipher", cipher, "resumed", "false")
	e.expect(t, n, "sluice_tls_handshake_duration_seconds", lst...)
	e.expect(t, n, "sluice_connection_duration_seconds", lst...)
	for _, r := range hsFailReasons {
		e.expect(t, 0, "sluice_tls_handshake_failures_total", "listener", "test", "reason", r)
	}
	e.expect(t, n, "sluice_upstream_server_connections_total", srv...)
	e.expect(t, 0, "sluice_upstream_server_connections", srv...)
	e.expect(t, 1, "sluice_upstream_server_up", srv...)
	e.expect(t, 0, "sluice_upstream_server_ejections_total", srv...)
	e.expect(t, n, "sluice_upstream_connect_duration_seconds", "upstream", "app")
	if got := len(e.fams["sluice_connections_closed_total"].GetMetric()); got != 1 {
		t.Errorf("%d series of sluice_connections_closed_total, want 1:\n%s", got, e.grep("sluice_connections_closed_total"))
	}
	if got := len(e.fams["sluice_tls_certificate_expiry_timestamp_seconds"].GetMetric()); got != 1 {
		t.Errorf("%d certificate expiry series, want 1:\n%s", got, e.grep("expiry"))
	}
}

// TestMetricsLiveBytes: a connection's bytes count while it is open, not
// only once it ends.
func TestMetricsLiveBytes(t *testing.T) {
	w := newWorld(t)
	b := w.backend(echo)
	p, addrs := w.serve(w.simple(b.addr()))
	lst := []string{"listener", "test"}

	c := w.mustDialTLS(addrs[0], nil)
	msg := bytes.Repeat([]byte("y"), 1000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	// The client has the echo; each direction's count lands just after
	// its write returns, which may be after the echo is read.
	waitMetric(t, p, 1000, "sluice_listener_received_bytes_total", lst...)
	e := waitMetric(t, p, 1000, "sluice_listener_sent_bytes_total", lst...)
	e.expect(t, 1000, "sluice_listener_received_bytes_total", lst...)
	e.expect(t, 1, "sluice_listener_connections", lst...)
	e.expect(t, 1, "sluice_upstream_server_connections", "upstream", "app", "server", b.addr())
	if _, ok := e.value("sluice_connections_closed_total", "listener", "test", "route", "default", "reason", "client_closed"); ok {
		t.Error("the connection counts as closed while it is open")
	}

	exchange(t, c, []byte("bye"))
	e = waitClosed(t, p, 1, "test", "default", "client_closed")
	e.expect(t, 1003, "sluice_listener_received_bytes_total", lst...)
	e.expect(t, 1003, "sluice_listener_sent_bytes_total", lst...)
	e.expect(t, 0, "sluice_listener_connections", lst...)
}

// TestMetricsHandshakeFailures: each way a handshake fails is counted
// under its reason, and no other.
func TestMetricsHandshakeFailures(t *testing.T) {
	no := false
	for _, tc := range []struct {
		name   string
		reason string // of sluice_tls_handshake_failures_total
		closed string // of sluice_connections_closed_total
		tune   func(w *world, l *ListenerConfig, u *UpstreamConfig)
		client func(t *testing.T, w *world, addr string)
	}{
		{
			name: "no common cipher", reason: hsFailProtocol, closed: reasonHandshake,
			client: func(t *testing.T, w *world, addr string) {
				// The listener offers only ECDHE suites with TLS 1.2.
				_, err := w.dialTLS(addr, &tls.Config{
					MaxVersion:   tls.VersionTLS12,
					CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256},
				})
				if err == nil {
					t.Fatal("handshake succeeded")
				}
			},
		},
		{
			name: "no client certificate", reason: hsFailClientCert, closed: reasonHandshake,
			tune: func(w *world, l *ListenerConfig, _ *UpstreamConfig) {
				l.TLS.ClientCA, _ = w.clientCA()
				l.TLS.ClientAuth = "require"
			},
			client: func(t *testing.T, w *world, addr string) {
				c, err := w.dialTLS(addr, nil)
				if err == nil {
					// With TLS 1.3 the client is done first; the server's
					// verdict comes with the first read.
					_, err = c.Read(make([]byte, 1))
				}
				if err == nil {
					t.Fatal("connection was accepted")
				}
			},
		},
		{
			name: "client certificate of another CA", reason: hsFailClientCert, closed: reasonHandshake,
			tune: func(w *world, l *ListenerConfig, _ *UpstreamConfig) {
				l.TLS.ClientCA, _ = w.clientCA()
				l.TLS.ClientAuth = "require"
			},
			client: func(t *testing.T, w *world, addr string) {
				ca, key := newCA(t, "other CA")
				cert, _, _ := issue(t, ca, key, "stranger", nil, true)
				c, err := w.dialTLS(addr, &tls.Config{Certificates: []tls.Certificate{cert}})
				if err == nil {
					_, err = c.Read(make([]byte, 1))
				}
				if err == nil {
					t.Fatal("connection was accepted")
				}
			},
		},
		{
			name: "no common protocol", reason: hsFailNoALPN, closed: reasonNoALPN,
			tune: func(_ *world, l *ListenerConfig, u *UpstreamConfig) {
				l.TLS.ALPN = []string{"http/1.1"}
				u.Protocols = []string{"http/1.1"}
			},
			client: func(t *testing.T, w *world, addr string) {
				if _, err := w.dialTLS(addr, &tls.Config{NextProtos: []string{"h2"}}); err == nil {
					t.Fatal("handshake succeeded")
				}
			},
		},
		{
			name: "silent client", reason: hsFailTimeout, closed: reasonHandshake,
			tune: func(_ *world, l *ListenerConfig, _ *UpstreamConfig) {
				l.HandshakeTimeout = Duration{200 * time.Millisecond}
				// Accepted without a byte: TCP_DEFER_ACCEPT would hold
				// a silent client in the kernel.
				l.Deferred = &no
			},
			client: func(t *testing.T, w *world, addr string) {
				expectClosed(t, ppDial(t, addr))
			},
		},
		{
			name: "hang-up before a byte", reason: hsFailClosed, closed: reasonHandshake,
			tune: func(_ *world, l *ListenerConfig, _ *UpstreamConfig) {
				l.Deferred = &no
			},
			client: func(t *testing.T, w *world, addr string) {
				ppDial(t, addr).Close()
			},
		},
		{
			name: "hang-up in a record", reason: hsFailClosed, closed: reasonHandshake,
			client: func(t *testing.T, w *world, addr string) {
				c := ppDial(t, addr)
				c.Write([]byte{0x16, 0x03}) // half a record header
				c.Close()
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			cfg := w.simple(w.backend(echo).addr())
			if tc.tune != nil {
				tc.tune(w, &cfg.Listeners[0], &cfg.Upstreams[0])
			}
			p, addrs := w.serve(cfg)
			tc.client(t, w, addrs[0])

			waitMetric(t, p, 1, "sluice_tls_handshake_failures_total", "listener", "test", "reason", tc.reason)
			e := waitClosed(t, p, 1, "test", "", tc.closed)
			for _, r := range hsFailReasons {
				if r != tc.reason {
					e.expect(t, 0, "sluice_tls_handshake_failures_total", "listener", "test", "reason", r)
				}
			}
			// Failed handshakes stay out of the duration histogram,
			// which scanners' timeouts would otherwise fill.
			e.expect(t, 0, "sluice_tls_handshake_duration_seconds", "listener", "test")
			e.expect(t, 1, "sluice_connection_duration_seconds", "listener", "test")
			e.expect(t, 0, "sluice_listener_health_checks_total", "listener", "test")
			e.expect(t, 0, "sluice_listener_received_bytes_total", "listener", "test")
			e.expect(t, 0, "sluice_listener_connections", "listener", "test")
			if _, ok := e.fams["sluice_tls_handshakes_total"]; ok {
				t.Errorf("a failed handshake counts as done:\n%s", e.grep("sluice_tls_handshakes_total"))
			}
		})
	}
}

// countingConn counts the bytes read from and written to a connection.
type countingConn struct {
	net.Conn
	mu      sync.Mutex
	in, out int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.in += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	c.out += int64(n)
	c.mu.Unlock()
	return n, err
}

// TestMetricsPassthroughBytes: a passthrough route's bytes are those on
// the wire, the ClientHello sluice peeked at included: exactly what the
// backend read and wrote.
func TestMetricsPassthroughBytes(t *testing.T) {
	w := newWorld(t)
	cert, _, _ := issue(t, w.ca, w.caKey, "a.example", []string{"a.example"}, false)
	scfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	type counts struct{ in, out int64 }
	got := make(chan counts, 1)
	b := w.backend(func(c net.Conn) {
		cc := &countingConn{Conn: c}
		tc := tls.Server(cc, scfg)
		tc.SetDeadline(time.Now().Add(testTimeout))
		if tc.Handshake() == nil {
			io.Copy(tc, tc) // to the client's close_notify
			// Then its FIN, before closing this side: the client is
			// the one that ends the connection, client_closed.
			io.Copy(io.Discard, cc)
			tc.CloseWrite()
			c.(*net.TCPConn).CloseWrite()
		}
		got <- counts{cc.in, cc.out}
	})
	p, addrs := w.serve(passthroughConfig(nil,
		[]RouteConfig{{Name: "a", SNI: []string{"a.example"}, Mode: "passthrough", Upstream: "a"}},
		UpstreamConfig{Name: "a", Servers: []string{b.addr()}}))

	c := w.mustDialTLS(addrs[0], &tls.Config{ServerName: "a.example"})
	exchange(t, c, []byte("through, untouched"))
	var want counts
	select {
	case want = <-got:
	case <-time.After(testTimeout):
		t.Fatal("the backend did not finish")
	}
	e := waitClosed(t, p, 1, "pass", "a", "client_closed")
	if want.in == 0 || want.out == 0 {
		t.Fatalf("the backend counted %+v", want)
	}
	e.expect(t, float64(want.in), "sluice_listener_received_bytes_total", "listener", "pass")
	e.expect(t, float64(want.out), "sluice_listener_sent_bytes_total", "listener", "pass")
	e.expect(t, 1, "sluice_connection_duration_seconds", "listener", "pass")
	// Not sluice's handshake: none counted, none timed.
	e.expect(t, 0, "sluice_tls_handshake_duration_seconds", "listener", "pass")
	if _, ok := e.fams["sluice_tls_handshakes_total"]; ok {
		t.Errorf("a passthrough connection counts as a handshake:\n%s", e.grep("sluice_tls_handshakes_total"))
	}
}

// TestMetricsProxyProtocol: behind a trusted proxy, the bytes that come
// with the PROXY header count, and a load balancer's checks count as
// health checks, not as failed handshakes.
func TestMetricsProxyProtocol(t *testing.T) {
	local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}

	t.Run("bytes with the header", func(t *testing.T) {
		w := newWorld(t)
		p, addrs := w.serve(&Config{
			Listeners: []ListenerConfig{{
				Name: "pp", AcceptProxy: true, TrustedProxies: []string{"127.0.0.0/8"},
				Routes: []RouteConfig{{Name: "plain", Upstream: "app"}},
			}},
			Upstreams: []UpstreamConfig{{Name: "app", Servers: []string{w.backend(echo).addr()}}},
		})
		hdr := ppFormat(t, &proxyproto.Header{Version: 2, Command: proxyproto.PROXY,
			TransportProtocol: proxyproto.TCPv4, SourceAddr: ppSrc, DestinationAddr: ppDst})
		c := ppDial(t, addrs[0])
		first, second := "with the header\n", "after it\n"
		if _, err := c.Write(append(hdr, first...)); err != nil {
			t.Fatal(err)
		}
		if got := readLine(t, c); got+"\n" != first {
			t.Fatalf("echo %q", got)
		}
		io.WriteString(c, second)
		if got := readLine(t, c); got+"\n" != second {
			t.Fatalf("echo %q", got)
		}
		c.CloseWrite()
		readAll(t, c)
		c.Close()
		e := waitClosed(t, p, 1, "pp", "plain", "client_closed")
		n := float64(len(first) + len(second))
		e.expect(t, n, "sluice_listener_received_bytes_total", "listener", "pp")
		e.expect(t, n, "sluice_listener_sent_bytes_total", "listener", "pp")
		e.expect(t, 0, "sluice_listener_health_checks_total", "listener", "pp")
	})

	proxied := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY,
		TransportProtocol: proxyproto.TCPv4, SourceAddr: ppSrc, DestinationAddr: ppDst}
	no := false
	for _, tc := range []struct {
		name  string
		check func(t *testing.T, c *net.TCPConn)
		// noDefer: a connection reset before its first byte never
		// leaves a TCP_DEFER_ACCEPT listener's kernel queue.
		noDefer bool
	}{
		{name: "LOCAL then close", check: func(t *testing.T, c *net.TCPConn) {
			c.Write(ppFormat(t, local))
			c.Close()
		}},
		{name: "LOCAL then reset", check: func(t *testing.T, c *net.TCPConn) {
			c.Write(ppFormat(t, local))
			c.SetLinger(0)
			c.Close()
		}},
		{name: "PROXY then close", check: func(t *testing.T, c *net.TCPConn) {
			c.Write(ppFormat(t, proxied))
			c.Close()
		}},
		// A bare connect-and-close reaches readProxyHeader as
		// go-proxyproto's ErrNoProxyProtocol, its word for an EOF
		// before the first byte, not as io.EOF.
		{name: "connect and close", check: func(t *testing.T, c *net.TCPConn) {
			c.Close()
		}},
		{name: "connect and reset", noDefer: true, check: func(t *testing.T, c *net.TCPConn) {
			c.SetLinger(0)
			c.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			cfg := ppProxyInConfig(w, w.backend(echo).addr(), "", "127.0.0.0/8")
			if tc.noDefer {
				cfg.Listeners[0].Deferred = &no
			}
			p, addrs := w.serve(cfg)
			tc.check(t, ppDial(t, addrs[0]))
			waitMetric(t, p, 1, "sluice_listener_health_checks_total", "listener", "test")
			e := waitClosed(t, p, 1, "test", "", reasonHealthCheck)
			e.expect(t, 1, "sluice_listener_accepted_connections_total", "listener", "test")
			e.expect(t, 0, "sluice_listener_connections", "listener", "test")
			for _, r := range hsFailReasons {
				e.expect(t, 0, "sluice_tls_handshake_failures_total", "listener", "test", "reason", r)
			}
			if got := len(e.fams["sluice_connections_closed_total"].GetMetric()); got != 1 {
				t.Errorf("closed with other reasons too:\n%s", e.grep("sluice_connections_closed_total"))
			}
		})
	}

	t.Run("LOCAL then a real handshake", func(t *testing.T) {
		// HAProxy's check-ssl: a health check all the same, whose
		// handshake counts as any other.
		w := newWorld(t)
		p, addrs := w.serve(ppProxyInConfig(w, w.backend(echo).addr(), "", "127.0.0.0/8"))
		c, err := ppDialTLS(w, addrs[0], ppFormat(t, local), false)
		if err != nil {
			t.Fatalf("handshake after PROXY LOCAL: %v", err)
		}
		exchange(t, c, []byte("check"))
		e := waitClosed(t, p, 1, "test", "default", "client_closed")
		e.expect(t, 1, "sluice_listener_health_checks_total", "listener", "test")
		e.expect(t, 5, "sluice_listener_received_bytes_total", "listener", "test")
		e.expect(t, 1, "sluice_tls_handshake_duration_seconds", "listener", "test")
	})
}

// TestMetricsUpstreamDown: a refused dial is counted under its reason,
// takes the server out (max_fails = 1) and ends the connection as
// upstream_unavailable.
func TestMetricsUpstreamDown(t *testing.T) {
	w := newWorld(t)
	dead := closedPort(t)
	one := 1
	cfg := w.simple(dead)
	cfg.Upstreams[0].MaxFails = &one
	p, addrs := w.serve(cfg)
	srv := []string{"upstream", "app", "server", dead}

	expectClosed(t, w.mustDialTLS(addrs[0], nil))
	e := waitClosed(t, p, 1, "test", "default", reasonUpstream)
	e.expect(t, 1, "sluice_upstream_connect_errors_total", append(srv, "reason", dialRefused)...)
	for _, r := range dialReasons {
		if r != dialRefused {
			e.expect(t, 0, "sluice_upstream_connect_errors_total", append(srv, "reason", r)...)
		}
	}
	e.expect(t, 1, "sluice_upstream_server_ejections_total", srv...)
	e.expect(t, 0, "sluice_upstream_server_up", srv...)
	e.expect(t, 0, "sluice_upstream_server_connections_total", srv...)
	e.expect(t, 0, "sluice_upstream_server_connections", srv...)
	e.expect(t, 0, "sluice_upstream_connect_duration_seconds", "upstream", "app")
	e.expect(t, 0, "sluice_listener_received_bytes_total", "listener", "test")
	e.expect(t, 1, "sluice_tls_handshakes_total", "listener", "test", "version", "TLSv1.3",
		"cipher", metricCipher(t, e), "resumed", "false")
}

// metricCipher returns the cipher label of the one handshake series.
func metricCipher(t *testing.T, e exposition) string {
	t.Helper()
	for _, m := range e.fams["sluice_tls_handshakes_total"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "cipher" {
				return lp.GetValue()
			}
		}
	}
	t.Fatalf("no handshake series:\n%s", e.text)
	return ""
}

// TestMetricsLimit: max_connections is exposed, and reaching it counts.
func TestMetricsLimit(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].MaxConnections = 1
	p, addrs := w.serve(cfg)
	lst := []string{"listener", "test"}

	first := w.mustDialTLS(addrs[0], nil)
	echoLine(t, first, "first")
	// The second waits in the accept queue, its handshake unanswered.
	second := make(chan error, 1)
	go func() {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: testTimeout}, "tcp", addrs[0],
			&tls.Config{RootCAs: w.pool, ServerName: "localhost"})
		if err == nil {
			c.SetDeadline(time.Now().Add(testTimeout))
			_, err = io.WriteString(c, "second\n")
			if err == nil {
				_, err = io.ReadFull(c, make([]byte, len("second\n")))
			}
			c.Close()
		}
		second <- err
	}()
	// The limit is reached as the first connection takes the one slot,
	// once however many clients then wait.
	e := waitMetric(t, p, 1, "sluice_listener_limit_reached_total", lst...)
	e.expect(t, 1, "sluice_listener_max_connections", lst...)
	e.expect(t, 1, "sluice_listener_accepted_connections_total", lst...)
	e.expect(t, 1, "sluice_listener_connections", lst...)

	first.Close()
	if err := <-second; err != nil {
		t.Fatalf("the second connection, once the first closed: %v", err)
	}
	// And again as the second takes it.
	e = waitMetric(t, p, 2, "sluice_listener_limit_reached_total", lst...)
	e.expect(t, 2, "sluice_listener_accepted_connections_total", lst...)
	waitMetric(t, p, 0, "sluice_listener_connections", lst...)
}

// TestMetricsNoClientLabels: nothing a client chooses or is (its address,
// the server name it asks for) becomes a label, which would let clients
// grow the number of series without bound.
func TestMetricsNoClientLabels(t *testing.T) {
	const sni = "attacker-chosen.example"
	w := newWorld(t)
	b := w.backend(echo)
	cfg := w.simple(b.addr())
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{
		Name:   "pass",
		Routes: []RouteConfig{{Name: "p", SNI: []string{"*.example"}, Mode: "passthrough", Upstream: "tls"}},
	})
	cfg.Upstreams = append(cfg.Upstreams, UpstreamConfig{Name: "tls", Servers: []string{w.tlsBackend(sni).addr()}})
	p, addrs := w.serve(cfg)

	// The default route takes any name; the client does not verify.
	c := w.mustDialTLS(addrs[0], &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	pc := w.mustDialTLS(addrs[1], &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if got := readLine(t, pc); got != sni {
		t.Fatalf("passthrough backend said %q", got)
	}
	echoLine(t, c, "hello")
	// A failed handshake carries the name too.
	if _, err := w.dialTLS(addrs[0], &tls.Config{ServerName: sni, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}); err == nil {
		t.Fatal("handshake with no common cipher succeeded")
	}
	clients := []string{c.LocalAddr().String(), pc.LocalAddr().String()}

	check := func(e exposition) {
		t.Helper()
		for _, s := range append(clients, sni) {
			if strings.Contains(e.text, s) {
				t.Errorf("the exposition mentions %q:\n%s", s, e.grep(s))
			}
		}
	}
	check(waitMetric(t, p, 1, "sluice_listener_connections", "listener", "pass"))
	c.Close()
	pc.Close()
	check(waitMetric(t, p, 0, "sluice_listener_connections", "listener", "test"))
	check(waitMetric(t, p, 0, "sluice_listener_connections", "listener", "pass"))
}

// TestMetricsReload: a reload keeps the counters of a listener that keeps
// its name, and the scrape still parses.
func TestMetricsReload(t *testing.T) {
	w := newWorld(t)
	a, b := w.backend(tagged("a")), w.backend(tagged("b"))
	p, addrs := w.serve(reloadConfig(w, a, b, "a"))
	lst := []string{"listener", "web"}

	for range 2 {
		c := w.mustDialTLS(addrs[0], nil)
		if tag := readLine(t, c); tag != "a" {
			t.Fatalf("tag %q", tag)
		}
		c.Close()
	}
	waitMetric(t, p, 2, "sluice_connection_duration_seconds", lst...)

	cfg := reloadConfig(w, a, b, "b")
	cfg.Listeners[0].MaxConnections = 7
	reload(t, p, cfg)
	e := scrape(t, p)
	e.expect(t, 2, "sluice_listener_accepted_connections_total", lst...)
	e.expect(t, 7, "sluice_listener_max_connections", lst...)
	e.expect(t, 2, "sluice_upstream_server_connections_total", "upstream", "a", "server", a.addr())

	c := w.mustDialTLS(addrs[0], nil)
	if tag := readLine(t, c); tag != "b" {
		t.Fatalf("tag %q after the reload", tag)
	}
	c.Close()
	e = waitMetric(t, p, 3, "sluice_connection_duration_seconds", lst...)
	e.expect(t, 3, "sluice_listener_accepted_connections_total", lst...)
	e.expect(t, 3, "sluice_tls_handshake_duration_seconds", lst...)
	e.expect(t, 2, "sluice_upstream_server_connections_total", "upstream", "a", "server", a.addr())
	e.expect(t, 1, "sluice_upstream_server_connections_total", "upstream", "b", "server", b.addr())
}

// TestMetricsLabelEscaping: a name with the characters the text format
// escapes comes back from the parser as it was.
func TestMetricsLabelEscaping(t *testing.T) {
	metrics.ExposeMetadata(true)
	const name = "a \"quoted\" \\ name\non two lines"
	s := metrics.NewSet()
	s.NewCounter("sluice_test_total" + labels("listener", name, "reason", "x")).Add(3)
	var buf bytes.Buffer
	s.WritePrometheus(&buf)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, buf.String())
	}
	e := exposition{text: buf.String(), fams: fams}
	e.expect(t, 3, "sluice_test_total", "listener", name, "reason", "x")
}

// TestMetricsSharedListenerName: unnamed listeners on one address (with
// reuse_port, to spread the accepts) share a name, and so their series.
func TestMetricsSharedListenerName(t *testing.T) {
	w := newWorld(t)
	addr := closedPort(t)
	cfg := w.simple(w.backend(echo).addr())
	l := cfg.Listeners[0]
	l.Name, l.Address, l.ReusePort, l.MaxConnections = "", addr, true, 10
	cfg.Listeners = []ListenerConfig{l, l}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	p, _ := w.serve(cfg)
	c := w.mustDialTLS(addr, nil)
	echoLine(t, c, "hello")
	c.Close()
	e := waitClosed(t, p, 1, addr, "default", "client_closed")
	e.expect(t, 1, "sluice_listener_accepted_connections_total", "listener", addr)
	e.expect(t, 20, "sluice_listener_max_connections", "listener", addr)
}
