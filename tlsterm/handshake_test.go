package tlsterm_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"sluice/tlsterm"
)

// handshakeWith accepts one conn on a loopback listener, lets client do what
// it likes with the other end, and returns what Handshake says on the
// server end. The test fails if Handshake has not returned within 5s.
func handshakeWith(t *testing.T, ctx context.Context, timeout time.Duration, client func(net.Conn)) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	client(cc)

	tc := tls.Server(sc, tlsterm.NewConfig(newStore(t), tlsterm.Options{}))
	done := make(chan error, 1)
	go func() { done <- tlsterm.Handshake(ctx, tc, timeout) }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Handshake did not return within 5s")
		return nil
	}
}

func TestHandshakeTimeout(t *testing.T) {
	// A client that connects and sends nothing.
	err := handshakeWith(t, context.Background(), 100*time.Millisecond, func(net.Conn) {})
	if err == nil {
		t.Fatal("Handshake succeeded with a silent client")
	}
	if !strings.Contains(err.Error(), "timed out") {
		t.Errorf("error %q does not say it timed out", err)
	}
}

func TestHandshakeTimeoutPartialHello(t *testing.T) {
	// A client that starts a record and stops.
	err := handshakeWith(t, context.Background(), 100*time.Millisecond, func(c net.Conn) {
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
	})
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("Handshake error = %v, want a timeout", err)
	}
}

func TestHandshakePlainHTTP(t *testing.T) {
	err := handshakeWith(t, context.Background(), 5*time.Second, func(c net.Conn) {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
	})
	if err == nil {
		t.Fatal("Handshake succeeded with a plain-HTTP client")
	}
	if strings.Contains(err.Error(), "timed out") {
		t.Errorf("error %q: want a refusal, not a timeout", err)
	}
	// Callers can tell plain text apart, say to log it as such.
	var rhe tls.RecordHeaderError
	if !errors.As(err, &rhe) {
		t.Errorf("error %q does not wrap a tls.RecordHeaderError", err)
	}
}

func TestHandshakeCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := handshakeWith(t, ctx, 5*time.Second, func(net.Conn) {})
	if err == nil {
		t.Fatal("Handshake succeeded with a canceled context")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %q does not wrap context.Canceled", err)
	}
	if strings.Contains(err.Error(), "timed out") {
		t.Errorf("error %q: a canceled context is not a timeout", err)
	}
}

func TestDescribe(t *testing.T) {
	ca := newCA(t, "test CA")
	const name = "example.com"
	f, _ := ca.leaf(t, t.TempDir(), "a", "a", ecdsaKey, name)
	srv := serve(t, tlsterm.NewConfig(newStore(t, f), tlsterm.Options{NextProtos: []string{"h2"}}))

	client := clientConfig(ca, name)
	client.MaxVersion = tls.VersionTLS12
	client.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
	client.NextProtos = []string{"h2"}
	_, state := srv.mustConnect(t, client)

	want := tlsterm.Info{
		SNI:     name,
		ALPN:    "h2",
		Version: "TLSv1.2",
		Cipher:  "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	}
	if got := tlsterm.Describe(state); got != want {
		t.Errorf("Describe = %+v, want %+v", got, want)
	}
}

// A client certificate that was not verified (RequireAnyClientCert takes
// any) does not count as one.
func TestDescribeUnverifiedClientCert(t *testing.T) {
	ca := newCA(t, "test CA")
	const name = "example.com"
	f, _ := ca.leaf(t, t.TempDir(), "a", "a", ecdsaKey, name)
	srv := serve(t, tlsterm.NewConfig(newStore(t, f), tlsterm.Options{ClientAuth: tls.RequireAnyClientCert}))

	cert := newCA(t, "unknown CA").client(t, "mallory")
	client := clientConfig(ca, name)
	client.Certificates = []tls.Certificate{cert}
	conn, state := srv.mustConnect(t, client)
	echo(t, conn)
	if len(state.PeerCertificates) == 0 {
		t.Fatal("the client sent no certificate")
	}
	if info := tlsterm.Describe(state); info.ClientCert || info.ClientCN != "" {
		t.Errorf("Describe: ClientCert = %v, ClientCN = %q; want false and empty for an unverified certificate", info.ClientCert, info.ClientCN)
	}
}

func TestVersionName(t *testing.T) {
	tests := []struct {
		v    uint16
		want string
	}{
		{tls.VersionTLS10, "TLSv1"},
		{tls.VersionTLS11, "TLSv1.1"},
		{tls.VersionTLS12, "TLSv1.2"},
		{tls.VersionTLS13, "TLSv1.3"},
		{0x0300, "0x0300"},
		{0, "0x0000"},
	}
	for _, tt := range tests {
		if got := tlsterm.VersionName(tt.v); got != tt.want {
			t.Errorf("VersionName(%#04x) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestCipherName(t *testing.T) {
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if got := tlsterm.CipherName(cs.ID); got != cs.Name {
			t.Errorf("CipherName(0x%04x) = %q, want %q", cs.ID, got, cs.Name)
		}
	}
	if got, want := tlsterm.CipherName(0xffff), tls.CipherSuiteName(0xffff); got != want {
		t.Errorf("CipherName(0xffff) = %q, want %q", got, want)
	}
}
