package l4

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"sluice/tlsterm"
)

// echoLine writes line and a newline to c and expects them back.
func echoLine(t *testing.T, c net.Conn, line string) {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write %q: %v", line, err)
	}
	if got := readLine(t, c); got != line {
		t.Fatalf("echo: got %q, want %q", got, line)
	}
}

// wsEchoServer serves WebSocket echo over plain HTTP on loopback and
// returns its address. Its handlers end when their connection does, or at
// cleanup.
func wsEchoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		BaseContext: func(net.Listener) context.Context { return ctx },
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(rw, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil {
					return
				}
				if err := c.Write(r.Context(), typ, msg); err != nil {
					return
				}
			}
		}),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		<-served
	})
	return ln.Addr().String()
}

// wsRouteWorld serves one TLS listener routing WebSocket upgrades to a
// WebSocket echo server and everything else to tagged("plain").
func wsRouteWorld(t *testing.T, handshake time.Duration) (*world, string) {
	t.Helper()
	w, addr, _ := wsRouteWorldWith(t, handshake, false)
	return w, addr
}

// wsRouteWorldWith is wsRouteWorld with the plain route's server_first
// setting, and that route's backend.
func wsRouteWorldWith(t *testing.T, handshake time.Duration, serverFirst bool) (*world, string, *backend) {
	t.Helper()
	w := newWorld(t)
	yes := true
	plain := w.backend(tagged("plain"))
	cfg := &Config{
		Listeners: []ListenerConfig{{
			Name:             "web",
			HandshakeTimeout: Duration{handshake},
			TLS:              &TLSConfig{Certificates: []CertConfig{w.cert("localhost")}},
			Routes: []RouteConfig{
				{Name: "websocket", WebSocket: &yes, Upstream: "ws"},
				{Name: "plain", Upstream: "plain", ServerFirst: serverFirst},
			},
		}},
		Upstreams: []UpstreamConfig{
			{Name: "ws", Servers: []string{wsEchoServer(t)}},
			{Name: "plain", Servers: []string{plain.addr()}},
		},
	}
	_, addrs := w.serve(cfg)
	return w, addrs[0], plain
}

func TestLifecycleWebSocketRoute(t *testing.T) {
	t.Run("websocket client", func(t *testing.T) {
		w, addr := wsRouteWorld(t, time.Minute)
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: w.pool},
			ForceAttemptHTTP2: false,
			TLSNextProto:      map[string]func(string, *tls.Conn) http.RoundTripper{},
			// "localhost" may resolve to ::1 first; sluice listens on
			// 127.0.0.1.
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			},
		}
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_, port, _ := net.SplitHostPort(addr)
		c, _, err := websocket.Dial(ctx, "wss://localhost:"+port+"/echo",
			&websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
		if err != nil {
			t.Fatalf("websocket dial: %v", err)
		}
		defer c.CloseNow()
		for _, msg := range []string{"hello", strings.Repeat("big ", 5_000)} {
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			typ, got, err := c.Read(ctx)
			if err != nil || typ != websocket.MessageText || string(got) != msg {
				t.Fatalf("websocket echo: %v %d bytes, %v; want %d bytes", typ, len(got), err, len(msg))
			}
		}
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatalf("websocket close: %v", err)
		}
		w.waitLog("msg=access", "listener=web", "route=websocket", "upstream=ws")
	})

	// Everything else goes to the plain route with its bytes unchanged,
	// and without waiting for the handshake timeout (one minute here).
	var big bytes.Buffer
	big.WriteString("GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	for big.Len() < maxHeadBytes+4000 {
		big.WriteString("X-Filler: " + strings.Repeat("f", 100) + "\r\n")
	}
	big.WriteString("\r\n")
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"plain GET", []byte("GET /index.html HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n")},
		{"near miss", []byte("GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websockets\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")},
		{"binary garbage", []byte("\x00\xff\x16\x03\x01GET / HTTP/1.1\r\n\r\n\x80\x81")},
		{"head over 8 KiB", big.Bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, addr := wsRouteWorld(t, time.Minute)
			c := w.mustDialTLS(addr, nil)
			wrote := make(chan error, 1)
			go func() {
				_, err := c.Write(tc.payload)
				wrote <- err
			}()
			// No CloseWrite: an EOF would end the peek early by itself.
			if tag := readLine(t, c); tag != "plain" {
				t.Fatalf("routed to %q, want plain", tag)
			}
			got := make([]byte, len(tc.payload))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read echo: %v", err)
			}
			if !bytes.Equal(got, tc.payload) {
				t.Fatalf("backend got %q, want %q", got, tc.payload)
			}
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
			c.Close()
			w.waitLog("msg=access", "route=plain", "upstream=plain")
		})
	}

	t.Run("silent client", func(t *testing.T) {
		w, addr, plain := wsRouteWorldWith(t, 200*time.Millisecond, false)
		start := time.Now()
		c := w.mustDialTLS(addr, nil)
		// Nothing sent: at the peek deadline the conn is cut (a reset, no
		// close_notify), and no backend ever hears of it.
		n, err := io.Copy(io.Discard, c)
		if n != 0 || !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read %d bytes, %v; want 0, a reset", n, err)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("cut after %s, before the 200ms peek timeout", d)
		}
		w.waitLog("msg=access", "reason=client_silent")
		select {
		case bc := <-plain.conns:
			t.Errorf("backend got a connection from %s", bc.RemoteAddr())
		default:
		}
	})

	t.Run("silent client, server_first route", func(t *testing.T) {
		w, addr, _ := wsRouteWorldWith(t, 200*time.Millisecond, true)
		start := time.Now()
		c := w.mustDialTLS(addr, nil)
		// Nothing sent: after the handshake timeout the conn takes the
		// default route, whose server speaks first, and the TLS conn is
		// still good.
		if tag := readLine(t, c); tag != "plain" {
			t.Fatalf("routed to %q, want plain", tag)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("routed after %s, before the 200ms peek timeout", d)
		}
		echoLine(t, c, "late words")
		c.Close()
		w.waitLog("msg=access", "route=plain", "bytes_in=11")
	})
}

// waitRefused dials addr until the connection is refused, which is how a
// closed listener answers; connections that still get through are closed.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	timeout := time.NewTimer(testTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, testTimeout)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		// A reset means the SYN was queued when the listener closed.
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial %s: %v; want connection refused", addr, err)
		}
		if c != nil {
			c.Close()
		}
		select {
		case <-tick.C:
		case <-timeout.C:
			t.Fatalf("%s still accepts connections", addr)
		}
	}
}

// waitShutdown waits for the result of a Shutdown running in a goroutine.
func waitShutdown(t *testing.T, shut <-chan error) error {
	t.Helper()
	select {
	case err := <-shut:
		return err
	case <-time.After(testTimeout):
		t.Fatal("Shutdown did not return")
		return nil
	}
}

func TestLifecycleDrain(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		w := newWorld(t)
		p, addrs := w.serve(w.simple(w.backend(echo).addr()))
		c := w.mustDialTLS(addrs[0], nil)
		echoLine(t, c, "before")

		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- p.Shutdown(ctx) }()
		waitRefused(t, addrs[0])
		echoLine(t, c, "during the drain")
		// At least the open conn; a probe of waitRefused accepted just
		// before the listener closed may be counted too.
		if line := w.waitLog("draining connections", "listener=test"); !regexp.MustCompile(`connections=[1-9]`).MatchString(line) {
			t.Errorf("drain log does not count the open connection: %s", line)
		}
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v while a conn was open", err)
		default:
		}
		c.Close()
		if err := waitShutdown(t, shut); err != nil {
			t.Fatalf("Shutdown after the last conn closed: %v", err)
		}
		w.waitLog("msg=access", "bytes_in=24", "bytes_out=24")
	})

	t.Run("forced", func(t *testing.T) {
		w := newWorld(t)
		p, addrs := w.serve(w.simple(w.backend(echo).addr()))
		c := w.mustDialTLS(addrs[0], nil)
		echoLine(t, c, "before")

		ctx, cancel := context.WithCancel(context.Background())
		shut := make(chan error, 1)
		go func() { shut <- p.Shutdown(ctx) }()
		waitRefused(t, addrs[0])
		echoLine(t, c, "during the drain")
		cancel()
		if err := waitShutdown(t, shut); !errors.Is(err, context.Canceled) {
			t.Fatalf("Shutdown = %v, want context.Canceled", err)
		}
		expectClosed(t, c)
		w.waitLog("level=INFO", "msg=access", "reason=canceled")
	})

	// A conn that has not reached its relay yet is cut at once too, not
	// after its PROXY or peek timeout (one minute here).
	for _, tc := range []struct {
		name    string
		partial string // sent, then silence
		setup   func(*ListenerConfig)
	}{
		{"forced while peeking", "GET / HT", func(l *ListenerConfig) {
			yes := true
			l.Routes = append([]RouteConfig{{Name: "ws", WebSocket: &yes, Upstream: "app"}}, l.Routes...)
		}},
		{"forced while reading the PROXY header", "\r\n\r\n\x00\r\nQUIT\n\x21", func(l *ListenerConfig) {
			l.AcceptProxy, l.TrustedProxies, l.ProxyTimeout = true, []string{"127.0.0.1"}, Duration{time.Minute}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			cfg := w.simple(w.backend(echo).addr())
			cfg.Listeners[0].TLS = nil
			cfg.Listeners[0].HandshakeTimeout = Duration{time.Minute}
			tc.setup(&cfg.Listeners[0])
			p, addrs := w.serve(cfg)
			c, err := net.Dial("tcp", addrs[0])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte(tc.partial))
			w.waitLog(`msg="conn open"`, "client="+c.LocalAddr().String())

			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			shut := make(chan error, 1)
			go func() { shut <- p.Shutdown(ctx) }()
			if err := waitShutdown(t, shut); !errors.Is(err, context.Canceled) {
				t.Fatalf("Shutdown = %v, want context.Canceled", err)
			}
			expectClosed(t, c)
			line := w.waitLog("msg=access", "client="+c.LocalAddr().String())
			if !strings.Contains(line, "reason=canceled") || !strings.Contains(line, "level=INFO") {
				t.Errorf("access line: %s; want reason=canceled at INFO", line)
			}
		})
	}
}

func TestLifecycleMaxConnections(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].MaxConnections = 1
	_, addrs := w.serve(cfg)

	first := w.mustDialTLS(addrs[0], nil)
	echoLine(t, first, "first")

	// The kernel completes the second TCP handshake, but sluice does not
	// accept it, so no ServerHello comes while the first conn is open.
	raw, err := net.DialTimeout("tcp", addrs[0], testTimeout)
	if err != nil {
		t.Fatalf("TCP connect beyond max_connections: %v", err)
	}
	defer raw.Close()
	second := tls.Client(raw, &tls.Config{RootCAs: w.pool, ServerName: "localhost"})
	second.SetDeadline(time.Now().Add(300 * time.Millisecond))
	err = second.Handshake()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("TLS handshake beyond max_connections: %v; want a timeout", err)
	}
	if n := strings.Count(w.logs.String(), `msg="conn open"`); n != 1 {
		t.Fatalf("%d conns accepted with max_connections = 1", n)
	}
	w.waitLog("level=WARN", "max_connections reached", "max_connections=1")
	raw.Close()

	first.Close()
	third := w.mustDialTLS(addrs[0], nil)
	echoLine(t, third, "third")
}

func TestLifecycleCertReload(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	files := cfg.Listeners[0].TLS.Certificates[0]
	p, addrs := w.serve(cfg)
	serialOf := func(c *tls.Conn) *big.Int { return c.ConnectionState().PeerCertificates[0].SerialNumber }

	a := w.mustDialTLS(addrs[0], nil)
	echoLine(t, a, "before the reload")
	old := serialOf(a)

	next, certPEM, keyPEM := issue(t, w.ca, w.caKey, "localhost", []string{"localhost"}, false)
	w.writeFile(files.Cert, certPEM)
	w.writeFile(files.Key, keyPEM)
	if err := p.ReloadCertificates(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	echoLine(t, a, "after the reload")
	if got := serialOf(w.mustDialTLS(addrs[0], nil)); got.Cmp(next.Leaf.SerialNumber) != 0 || got.Cmp(old) == 0 {
		t.Fatalf("new conn got serial %s, want the reloaded %s (old %s)", got, next.Leaf.SerialNumber, old)
	}

	w.writeFile(files.Key, []byte("-----BEGIN EC PRIVATE KEY-----\nbroken\n-----END EC PRIVATE KEY-----\n"))
	err := p.ReloadCertificates()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "listener[0].tls.certificates[0]" {
		t.Fatalf("reload with a broken key: %v; want an error for listener[0].tls.certificates[0]", err)
	}
	if got := serialOf(w.mustDialTLS(addrs[0], nil)); got.Cmp(next.Leaf.SerialNumber) != 0 {
		t.Fatalf("after a failed reload a new conn got serial %s, want %s", got, next.Leaf.SerialNumber)
	}
	echoLine(t, a, "after the failed reload")
}

func TestLifecycleRouteIdleTimeout(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].IdleTimeout = Duration{time.Minute}
	cfg.Listeners[0].Routes[0].IdleTimeout = Duration{150 * time.Millisecond}
	_, addrs := w.serve(cfg)
	c := w.mustDialTLS(addrs[0], nil)
	echoLine(t, c, "ping")
	expectClosed(t, c)
	w.waitLog("msg=access", "route=default", "reason=idle_timeout", "bytes_in=5", "bytes_out=5")
}

// clientSecret captures a TLS 1.3 client's application traffic secret from
// its KeyLogWriter.
type clientSecret struct{ secret []byte }

func (k *clientSecret) Write(p []byte) (int, error) {
	if f := strings.Fields(string(p)); len(f) == 3 && f[0] == "CLIENT_TRAFFIC_SECRET_0" {
		k.secret, _ = hex.DecodeString(f[2])
	}
	return len(p), nil
}

// expandLabel is TLS 1.3's HKDF-Expand-Label with an empty context and
// SHA-256 (RFC 8446 §7.1).
func expandLabel(t *testing.T, secret []byte, label string, n int) []byte {
	t.Helper()
	info := append([]byte{byte(n >> 8), byte(n), byte(len("tls13 " + label))}, "tls13 "+label...)
	out, err := hkdf.Expand(sha256.New, secret, string(append(info, 0)), n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// keyUpdateFlood seals, as the client of a TLS_AES_128_GCM_SHA256
// connection whose traffic secret is secret, records crypto/tls never
// sends on its own: "GET /" and then, n times, 15 KeyUpdates asking for one
// back followed by one byte of a request line that never ends. Each byte
// resets crypto/tls's limit on records that carry no data.
func keyUpdateFlood(t *testing.T, secret []byte, n int) []byte {
	t.Helper()
	var (
		out  []byte
		aead cipher.AEAD
		iv   []byte
		seq  uint64
	)
	rekey := func() {
		block, err := aes.NewCipher(expandLabel(t, secret, "key", 16))
		if err != nil {
			t.Fatal(err)
		}
		aead, _ = cipher.NewGCM(block)
		iv, seq = expandLabel(t, secret, "iv", 12), 0
	}
	seal := func(typ byte, content []byte) {
		inner := append(slices.Clip(content), typ)
		hdr := []byte{23, 3, 3, 0, 0} // application_data, TLS 1.2, length
		binary.BigEndian.PutUint16(hdr[3:], uint16(len(inner)+aead.Overhead()))
		nonce := slices.Clone(iv)
		for i := range 8 {
			nonce[4+i] ^= byte(seq >> (56 - 8*i))
		}
		seq++
		out = aead.Seal(append(out, hdr...), nonce, inner, hdr)
	}
	rekey()
	seal(23, []byte("GET /"))
	for range n {
		for range 15 {
			seal(22, []byte{24, 0, 0, 1, 1}) // KeyUpdate, update_requested
			secret = expandLabel(t, secret, "traffic upd", 32)
			rekey()
		}
		seal(23, []byte("a"))
	}
	return out
}

// TestLifecyclePeekClientNeverReads: while sluice peeks at the request
// head, crypto/tls answers a client's KeyUpdate from inside Read. A client
// that asks for many and never reads fills the socket buffers, and that
// write must give up at the peek deadline like the read, or the conn is
// held for as long as the client likes.
func TestLifecyclePeekClientNeverReads(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	no := false
	cfg.Listeners[0].Routes[0].WebSocket = &no
	cfg.Listeners[0].HandshakeTimeout = Duration{time.Second}
	cfg.Listeners[0].Address = "127.0.0.1:0" // unused: the server gets ln below
	// What crypto/tls does with the flood during the peek is the subject;
	// a kernel that could take the connection over after it is not.
	cfg.Listeners[0].TLS.KTLS = KTLSOff
	p, err := New(cfg, w.logger)
	if err != nil {
		t.Fatal(err)
	}
	// Small socket buffers on both sides, so that a few hundred KeyUpdates
	// fill them. Accepted sockets inherit the listener's.
	small := func(opt int) func(string, string, syscall.RawConn) error {
		return func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 4096) })
		}
	}
	lc := net.ListenConfig{Control: small(syscall.SO_SNDBUF)}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := p.gen.servers[0]
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		s.Shutdown(ctx)
		<-served
	})

	d := &net.Dialer{Timeout: testTimeout, Control: small(syscall.SO_RCVBUF)}
	raw, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	keys := &clientSecret{}
	c := tls.Client(raw, &tls.Config{ServerName: "localhost", RootCAs: w.pool, KeyLogWriter: keys})
	c.SetDeadline(time.Now().Add(testTimeout))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if cs := c.ConnectionState(); cs.Version != tls.VersionTLS13 || cs.CipherSuite != tls.TLS_AES_128_GCM_SHA256 {
		t.Skipf("negotiated %s, %s; the test seals TLS 1.3 AES-128-GCM records", tlsterm.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
	}
	flood := keyUpdateFlood(t, keys.secret, 300) // well under the 8 KiB peek
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		raw.Write(flood) // blocks once sluice stops reading; ends at Close
	}()
	defer func() {
		raw.Close()
		<-wrote
	}()
	// Never read. The peek must end after its second: the KeyUpdate answer
	// it could not send leaves crypto/tls with the old read key, so the
	// next record fails.
	// (The line comes 5s later: closing the tls.Conn tries a close_notify,
	// which crypto/tls bounds by 5s.)
	w.waitLog("msg=access", "client="+raw.LocalAddr().String(), "reason=peek")
}

// TestLifecycleClientCAReload: SIGHUP's reload also re-reads client_ca, so
// an operator can rotate the CA without a restart; a broken CA file keeps
// the previous one.
func TestLifecycleClientCAReload(t *testing.T) {
	w := newWorld(t)
	caPath, issueOld := w.clientCA()
	newCA, newKey := newCA(t, "next client CA")
	newPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newCA.Raw})
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].TLS.ClientCA = caPath
	cfg.Listeners[0].TLS.ClientAuth = "require"
	p, addrs := w.serve(cfg)

	oldCert := issueOld("old")
	newCert, _, _ := issue(t, newCA, newKey, "new", nil, true)
	accepted := func(cert tls.Certificate) bool {
		c, err := w.dialTLS(addrs[0], &tls.Config{Certificates: []tls.Certificate{cert}})
		if err != nil {
			return false
		}
		defer c.Close()
		// TLS 1.3 reports a rejected client certificate on the first read.
		if _, err := c.Write([]byte("x")); err != nil {
			return false
		}
		_, err = io.ReadFull(c, make([]byte, 1))
		return err == nil
	}
	if !accepted(oldCert) || accepted(newCert) {
		t.Fatal("before the reload: want the old CA's client accepted and the new one's refused")
	}
	w.writeFile(caPath, newPEM)
	if err := p.ReloadCertificates(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if accepted(oldCert) || !accepted(newCert) {
		t.Fatal("after the reload: want the new CA's client accepted and the old one's refused")
	}
	w.writeFile(caPath, []byte("not PEM"))
	err := p.ReloadCertificates()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "listener[0].tls.client_ca" {
		t.Fatalf("reload with a broken CA file: %v; want an error for listener[0].tls.client_ca", err)
	}
	if !accepted(newCert) {
		t.Fatal("after a failed reload the previous CA must still be in force")
	}
}
