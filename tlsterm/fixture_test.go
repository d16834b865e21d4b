package tlsterm_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"sluice/tlsterm"
)

// Certificates are generated in the test: a CA per test and leaves signed
// by it, written as PEM into t.TempDir() so the Store loads real files.

type keyType int

const (
	ecdsaKey keyType = iota
	rsaKey
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

// newCA makes an ECDSA P-256 CA named cn.
func newCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{
		cert: cert,
		key:  key,
		pool: pool,
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newKey(t *testing.T, kt keyType) crypto.Signer {
	t.Helper()
	var (
		key crypto.Signer
		err error
	)
	switch kt {
	case rsaKey:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// sign issues a certificate for key from tmpl, filling in the serial and,
// unless tmpl has them, the validity: from an hour ago for a day.
func (ca *testCA) sign(t *testing.T, tmpl *x509.Certificate, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl.SerialNumber = serial(t)
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// leaf issues a server certificate for dnsNames with the subject common
// name label (which tests use to tell certificates apart), and writes it to
// dir/base.crt and dir/base.key, replacing whatever was there.
func (ca *testCA) leaf(t *testing.T, dir, base, label string, kt keyType, dnsNames ...string) (tlsterm.CertFile, *x509.Certificate) {
	t.Helper()
	key := newKey(t, kt)
	cert := ca.sign(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: label},
		DNSNames:    dnsNames,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, key)
	return writePair(t, dir, base, cert, key), cert
}

// leafValid is leaf with the validity period [notBefore, notAfter].
func (ca *testCA) leafValid(t *testing.T, dir, base string, notBefore, notAfter time.Time, dnsNames ...string) (tlsterm.CertFile, *x509.Certificate) {
	t.Helper()
	key := newKey(t, ecdsaKey)
	cert := ca.sign(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: base},
		DNSNames:    dnsNames,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
	}, key)
	return writePair(t, dir, base, cert, key), cert
}

// client issues a client certificate with common name cn.
func (ca *testCA) client(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key := newKey(t, ecdsaKey)
	cert := ca.sign(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, key)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

func writePair(t *testing.T, dir, base string, cert *x509.Certificate, key crypto.Signer) tlsterm.CertFile {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := tlsterm.CertFile{
		Cert: filepath.Join(dir, base+".crt"),
		Key:  filepath.Join(dir, base+".key"),
	}
	writeFile(t, f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	writeFile(t, f.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return f
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func newStore(t *testing.T, files ...tlsterm.CertFile) *tlsterm.Store {
	t.Helper()
	s, err := tlsterm.NewStore(files, "", nil)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	return s
}

// A loopback TLS server: every conn goes through tlsterm.Handshake, whose
// result is sent on results; a conn that completes the handshake then
// echoes what it reads until the client closes.

type handshakeResult struct {
	state tls.ConnectionState
	err   error
}

type server struct {
	addr    string
	cfg     *tls.Config
	results chan handshakeResult

	done  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// serve runs a server with cfg on 127.0.0.1:0 until the test ends.
func serve(t *testing.T, cfg *tls.Config) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{
		addr:    ln.Addr().String(),
		cfg:     cfg,
		results: make(chan handshakeResult, 8),
		done:    make(chan struct{}),
		conns:   make(map[net.Conn]struct{}),
	}
	s.wg.Add(1)
	go s.accept(ln)
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		close(s.done)
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

func (s *server) handle(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	tc := tls.Server(c, s.cfg)
	err := tlsterm.Handshake(context.Background(), tc, 5*time.Second)
	var r handshakeResult
	if err != nil {
		r.err = err
	} else {
		r.state = tc.ConnectionState()
	}
	select {
	case s.results <- r:
	case <-s.done:
		return
	}
	if err == nil {
		io.Copy(tc, tc)
	}
}

// next returns the server's result for the next conn.
func (s *server) next(t *testing.T) handshakeResult {
	t.Helper()
	select {
	case r := <-s.results:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no handshake result from the server within 5s")
		return handshakeResult{}
	}
}

// attempt is one connection as both ends saw it.
type attempt struct {
	conn      *tls.Conn // closed when the test ends
	clientErr error     // the client's handshake error
	server    handshakeResult
}

// connect dials s with cfg and runs the client handshake.
func (s *server) connect(t *testing.T, cfg *tls.Config) attempt {
	t.Helper()
	raw, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, cfg)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a := attempt{conn: c, clientErr: c.HandshakeContext(ctx)}
	if a.clientErr != nil {
		c.Close() // so the server does not wait for the rest of a failed handshake
	}
	a.server = s.next(t)
	return a
}

// mustConnect is connect for handshakes that must succeed on both sides.
func (s *server) mustConnect(t *testing.T, cfg *tls.Config) (*tls.Conn, tls.ConnectionState) {
	t.Helper()
	a := s.connect(t, cfg)
	if a.clientErr != nil {
		t.Fatalf("client handshake: %v (server: %v)", a.clientErr, a.server.err)
	}
	if a.server.err != nil {
		t.Fatalf("server handshake: %v", a.server.err)
	}
	return a.conn, a.server.state
}

// echo checks that c is alive: what it writes comes back. Reading also
// processes post-handshake messages such as TLS 1.3 session tickets.
func echo(t *testing.T, c *tls.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	const msg = "ping"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

// clientConfig trusts ca and asks for serverName.
func clientConfig(ca *testCA, serverName string) *tls.Config {
	return &tls.Config{RootCAs: ca.pool, ServerName: serverName}
}
