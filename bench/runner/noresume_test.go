package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"sluice/tlsterm"
)

// TestCheckNoResumption runs the check against a TLS server with tickets
// and one without: only the first is refused.
func TestCheckNoResumption(t *testing.T) {
	cert, err := tlsterm.SelfSigned([]string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		tickets bool
	}{{"tickets", true}, {"no tickets", false}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{Certificates: []tls.Certificate{*cert}, SessionTicketsDisabled: !tc.tickets}
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
