package l4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(envBenchClients); spec != "" {
		// This binary, started by BenchmarkIdleSluiceMemory to hold its
		// clients in a process of their own.
		os.Exit(benchClients(spec))
	}
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait in these tests; it is a safety net against
// hangs, never a synchronisation device.
const testTimeout = 10 * time.Second

// world is an in-process sluice with real loopback sockets: certificates
// from a test CA, backends on 127.0.0.1:0, and captured logs.
type world struct {
	t      testing.TB
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	logs   *syncBuffer
	logger *slog.Logger
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), logs: &syncBuffer{}}
	w.logger = slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.ca, w.caKey = newCA(t, "sluice test CA")
	w.pool = x509.NewCertPool()
	w.pool.AddCert(w.ca)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sluice log:\n%s", w.logs.String())
		}
	})
	return w
}

// syncBuffer is a bytes.Buffer safe for concurrent log writes, which
// tells waiters when something was written.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed on the next write
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return b.b.Write(p)
}

// snapshot returns the contents and a channel closed at the next write.
func (b *syncBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.b.String(), b.changed
}

func (b *syncBuffer) String() string {
	s, _ := b.snapshot()
	return s
}

func newCA(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

var serial struct {
	mu sync.Mutex
	n  int64
}

func nextSerial() *big.Int {
	serial.mu.Lock()
	defer serial.mu.Unlock()
	serial.n++
	return big.NewInt(serial.n + 100)
}

// issue signs a leaf for names (server) or a client certificate with
// common name cn, and returns it as a tls.Certificate.
func issue(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, names []string, client bool) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM, keyPEM
}

// cert writes a server certificate for names to files and returns them as
// configuration.
func (w *world) cert(names ...string) CertConfig {
	w.t.Helper()
	_, certPEM, keyPEM := issue(w.t, w.ca, w.caKey, names[0], names, false)
	base := filepath.Join(w.dir, strings.ReplaceAll(names[0], "*", "star")+fmt.Sprint(nextSerial()))
	w.writeFile(base+".pem", certPEM)
	w.writeFile(base+".key", keyPEM)
	return CertConfig{Cert: base + ".pem", Key: base + ".key"}
}

func (w *world) writeFile(path string, data []byte) {
	w.t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		w.t.Fatal(err)
	}
}

// clientCA makes a client CA, writes it to a file and returns the path and
// a function issuing client certificates with a given CN.
func (w *world) clientCA() (string, func(cn string) tls.Certificate) {
	w.t.Helper()
	ca, key := newCA(w.t, "client CA")
	path := filepath.Join(w.dir, "client-ca.pem")
	w.writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	return path, func(cn string) tls.Certificate {
		c, _, _ := issue(w.t, ca, key, cn, nil, true)
		return c
	}
}

// backend is a TCP server on 127.0.0.1:0 running handle for each
// connection; Close waits for the handlers.
type backend struct {
	ln    net.Listener
	wg    sync.WaitGroup
	conns chan net.Conn // every accepted conn, for tests that want them
}

func (w *world) backend(handle func(net.Conn)) *backend {
	w.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	b := &backend{ln: ln, conns: make(chan net.Conn, 64)}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case b.conns <- c:
			default:
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	w.t.Cleanup(b.close)
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) close() {
	b.ln.Close()
	for {
		select {
		case c := <-b.conns:
			c.Close()
			continue
		default:
		}
		break
	}
	b.wg.Wait()
}

// echo copies everything back and half-closes when the client does.
func echo(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

// tagged writes name and a newline, then echoes.
func tagged(name string) func(net.Conn) {
	return func(c net.Conn) {
		io.WriteString(c, name+"\n")
		echo(c)
	}
}

// serve builds and serves cfg. Listener addresses that are empty become
// 127.0.0.1:0. It returns the proxy and each listener's address; the
// proxy is shut down at cleanup.
func (w *world) serve(cfg *Config) (*Proxy, []string) {
	w.t.Helper()
	for i := range cfg.Listeners {
		if cfg.Listeners[i].Address == "" {
			cfg.Listeners[i].Address = "127.0.0.1:0"
		}
	}
	p, err := New(cfg, w.logger)
	if err != nil {
		w.t.Fatalf("New: %v", err)
	}
	if err := p.Listen(context.Background()); err != nil {
		w.t.Fatalf("Listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve() }()
	w.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			w.t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			w.t.Errorf("Serve: %v", err)
		}
	})
	var addrs []string
	for _, a := range p.Addrs() {
		addrs = append(addrs, a.String())
	}
	return p, addrs
}

// simple returns a config with one TLS listener (a certificate for
// "localhost") and one route to one upstream server.
func (w *world) simple(server string) *Config {
	return &Config{
		Listeners: []ListenerConfig{{
			Name:   "test",
			TLS:    &TLSConfig{Certificates: []CertConfig{w.cert("localhost")}},
			Routes: []RouteConfig{{Name: "default", Upstream: "app"}},
		}},
		Upstreams: []UpstreamConfig{{Name: "app", Servers: []string{server}}},
	}
}

// dialTLS connects and handshakes as a client trusting the test CA.
func (w *world) dialTLS(addr string, cfg *tls.Config) (*tls.Conn, error) {
	w.t.Helper()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	if cfg.RootCAs == nil {
		cfg.RootCAs = w.pool
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "localhost"
	}
	d := &net.Dialer{Timeout: testTimeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	w.t.Cleanup(func() { c.Close() })
	return c, nil
}

// mustDialTLS is dialTLS that fails the test on error.
func (w *world) mustDialTLS(addr string, cfg *tls.Config) *tls.Conn {
	w.t.Helper()
	c, err := w.dialTLS(addr, cfg)
	if err != nil {
		w.t.Fatalf("dial %s: %v", addr, err)
	}
	return c
}

// readLine reads one line from c (without the newline).
func readLine(t *testing.T, r io.Reader) string {
	t.Helper()
	var b []byte
	one := make([]byte, 1)
	for {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return string(b)
			}
			b = append(b, one[0])
		}
		if err != nil {
			t.Fatalf("read line: %v (got %q)", err, b)
		}
	}
}

// expectClosed asserts that the peer closes c: a read returns EOF or an
// error, not data and not a timeout.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("expected the connection to be closed; read %d bytes, err %v", n, err)
	}
}

// waitLog waits until the log contains every one of parts on one line, and
// returns that line.
func (w *world) waitLog(parts ...string) string {
	w.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		logs, changed := w.logs.snapshot()
		for _, l := range strings.Split(logs, "\n") {
			ok := true
			for _, p := range parts {
				if !strings.Contains(l, p) {
					ok = false
					break
				}
			}
			if ok {
				return l
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			w.t.Fatalf("no log line with %q in:\n%s", parts, w.logs.String())
		}
	}
}

// readAll reads until EOF with the test deadline.
func readAll(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	b, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		t.Fatalf("read all: %v", err)
	}
	return b
}
