package l4

import (
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestBuildTLSSessionTicketLifetime checks that session_ticket_lifetime,
// and its default when unset, reach the listener's *tls.Config: a client
// resumes before the lifetime is up, on the server's clock, and not after.
func TestBuildTLSSessionTicketLifetime(t *testing.T) {
	for _, tc := range []struct {
		name       string
		lifetime   Duration
		after      time.Duration
		wantResume bool
	}{
		{"default, within 1h", Duration{}, 59 * time.Minute, true},
		{"default, past 1h", Duration{}, 61 * time.Minute, false},
		{"10m, past it", Duration{10 * time.Minute}, 11 * time.Minute, false},
		{"3h, within it", Duration{3 * time.Hour}, 2 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := buildTLS(&TLSConfig{SessionTicketLifetime: tc.lifetime}, "listener[0].tls", nil, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var now atomic.Int64
			now.Store(time.Now().UnixNano())
			cfg.Time = func() time.Time { return time.Unix(0, now.Load()) }
			// The store serves its self-signed certificate for localhost.
			client := &tls.Config{ServerName: "localhost", InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(1)}

			if handshakeResumed(t, cfg, client) {
				t.Fatal("the first connection resumed")
			}
			now.Add(int64(tc.after))
			if got := handshakeResumed(t, cfg, client); got != tc.wantResume {
				t.Errorf("resumed = %v after %v, want %v", got, tc.after, tc.wantResume)
			}
		})
	}
}

// handshakeResumed connects client to a one-connection loopback server
// with cfg, reads the byte the server sends after its handshake (so that
// a TLS 1.3 ticket is taken in), and reports whether the session resumed.
func handshakeResumed(t *testing.T, cfg, client *tls.Config) bool {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		_, err = tls.Server(c, cfg).Write([]byte{1})
		served <- err
	}()
	raw, err := net.DialTimeout("tcp", ln.Addr().String(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, client)
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("client: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}
	return c.ConnectionState().DidResume
}

// TestBuildTLSRecordSizing: dynamic_record_sizing reaches the listener's
// *tls.Config, off unless set (tlsterm's TestRecordSizes checks what each
// writes).
func TestBuildTLSRecordSizing(t *testing.T) {
	for _, dynamic := range []bool{false, true} {
		cfg, _, err := buildTLS(&TLSConfig{DynamicRecordSizing: dynamic}, "listener[0].tls", nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.DynamicRecordSizingDisabled == dynamic {
			t.Errorf("dynamic_record_sizing = %v: DynamicRecordSizingDisabled = %v", dynamic, cfg.DynamicRecordSizingDisabled)
		}
	}
}
