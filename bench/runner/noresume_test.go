package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestCheckNoResumption runs the check against a TLS server with tickets
// and one without: only the first is refused.
func TestCheckNoResumption(t *testing.T) {
	cert := testCertificate(t)
	for _, tc := range []struct {
		name    string
		tickets bool
	}{{"tickets", true}, {"no tickets", false}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: !tc.tickets}
			addr := serveS3(t, cfg)
			err := checkNoResumption(context.Background(), addr)
			if tc.tickets && (err == nil || !strings.Contains(err.Error(), "resumed a TLS session")) {
				t.Errorf("with tickets: err = %v, want a resumed session reported", err)
			}
			if !tc.tickets && err != nil {
				t.Errorf("without tickets: %v", err)
			}
		})
	}
}

// serveS3 answers each connection's request, as S3's backend does through
// a terminator, and closes it.
func serveS3(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func testCertificate(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
