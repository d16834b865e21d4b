package tlsterm_test

import (
	"crypto/tls"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"sluice/tlsterm"
)

// clock is a server's tls.Config.Time that the test moves by hand.
type clock struct{ now atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.now.Store(time.Now().UnixNano())
	return c
}

func (c *clock) Time() time.Time         { return time.Unix(0, c.now.Load()) }
func (c *clock) advance(d time.Duration) { c.now.Add(int64(d)) }

// versionLabel names a client's MaxVersion in subtest names.
func versionLabel(maxVersion uint16) string {
	if maxVersion == tls.VersionTLS12 {
		return "TLS 1.2"
	}
	return "TLS 1.3"
}

// resumeClient is clientConfig with a session cache, so that it resumes.
func resumeClient(ca *testCA, name string, maxVersion uint16) *tls.Config {
	c := clientConfig(ca, name)
	c.MaxVersion = maxVersion
	c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	return c
}

// TestSessionTicketLifetime connects once for a ticket, moves the server's
// clock, and connects again: the client resumes while the ticket is
// younger than the lifetime, and does a full handshake once it is older.
func TestSessionTicketLifetime(t *testing.T) {
	ca := newCA(t, "test CA")
	const name = "example.com"
	f, _ := ca.leaf(t, t.TempDir(), "a", "a", ecdsaKey, name)
	store := newStore(t, f)

	tests := []struct {
		name       string
		lifetime   time.Duration
		maxVersion uint16
		after      time.Duration // server clock moved between the two connections
		wantResume bool
	}{
		{"within 1h", time.Hour, 0, 59 * time.Minute, true},
		{"past 1h", time.Hour, 0, 61 * time.Minute, false},
		{"within 1h", time.Hour, tls.VersionTLS12, 59 * time.Minute, true},
		{"past 1h", time.Hour, tls.VersionTLS12, 61 * time.Minute, false},
		{"past 5m", 5 * time.Minute, 0, 6 * time.Minute, false},
		{"past 5m", 5 * time.Minute, tls.VersionTLS12, 6 * time.Minute, false},
		// Zero leaves crypto/tls's own 7 days.
		{"zero, after 2 days", 0, 0, 48 * time.Hour, true},
		{"zero, after 2 days", 0, tls.VersionTLS12, 48 * time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(versionLabel(tt.maxVersion)+" "+tt.name, func(t *testing.T) {
			clk := newClock()
			cfg := tlsterm.NewConfig(store, tlsterm.Options{SessionTicketLifetime: tt.lifetime})
			cfg.Time = clk.Time
			srv := serve(t, cfg)
			client := resumeClient(ca, name, tt.maxVersion)

			first, _ := srv.mustConnect(t, client)
			if first.ConnectionState().DidResume {
				t.Fatal("the first connection resumed")
			}
			echo(t, first) // a TLS 1.3 ticket arrives after the handshake; reading processes it
			first.Close()

			clk.advance(tt.after)
			second, state := srv.mustConnect(t, client)
			if got := second.ConnectionState().DidResume; got != tt.wantResume {
				t.Errorf("client DidResume = %v after %v, want %v", got, tt.after, tt.wantResume)
			}
			if state.DidResume != tt.wantResume {
				t.Errorf("server DidResume = %v, want %v", state.DidResume, tt.wantResume)
			}
			echo(t, second)
		})
	}
}

// TestSessionTicketLifetimeRenewed checks that the lifetime counts from
// the ticket the client holds: resuming gets it a new ticket, good for a
// lifetime from then.
func TestSessionTicketLifetimeRenewed(t *testing.T) {
	ca := newCA(t, "test CA")
	const name = "example.com"
	f, _ := ca.leaf(t, t.TempDir(), "a", "a", ecdsaKey, name)
	store := newStore(t, f)
	for _, v := range []uint16{0, tls.VersionTLS12} {
		t.Run(versionLabel(v), func(t *testing.T) {
			clk := newClock()
			cfg := tlsterm.NewConfig(store, tlsterm.Options{SessionTicketLifetime: time.Hour})
			cfg.Time = clk.Time
			srv := serve(t, cfg)
			client := resumeClient(ca, name, v)

			for i, step := range []struct {
				after      time.Duration
				wantResume bool
			}{
				{0, false},
				{50 * time.Minute, true},  // 50m after the first ticket
				{50 * time.Minute, true},  // 100m after the first, 50m after the second
				{61 * time.Minute, false}, // past the last ticket's hour
			} {
				clk.advance(step.after)
				c, _ := srv.mustConnect(t, client)
				if got := c.ConnectionState().DidResume; got != step.wantResume {
					t.Errorf("connection %d, %v after the one before: DidResume = %v, want %v", i, step.after, got, step.wantResume)
				}
				echo(t, c)
				c.Close()
			}
		})
	}
}

// TestSessionTicketsAcrossCAReload checks that a client CA reload, which
// swaps the config GetConfigForClient hands out, keeps the ticket keys:
// a client without a certificate still resumes. One whose certificate the
// new CAs refuse does not: crypto/tls verifies a resumed session's chain
// against the current pool, and the full handshake then fails.
func TestSessionTicketsAcrossCAReload(t *testing.T) {
	serverCA := newCA(t, "server CA")
	const name = "example.com"
	dir := t.TempDir()
	f, _ := serverCA.leaf(t, dir, "a", "a", ecdsaKey, name)
	for _, v := range []uint16{0, tls.VersionTLS12} {
		t.Run(versionLabel(v), func(t *testing.T) {
			oldCA, newCA := newCA(t, "old client CA"), newCA(t, "new client CA")
			caFile := filepath.Join(t.TempDir(), "clients.pem")
			writeFile(t, caFile, oldCA.pem)
			store, err := tlsterm.NewStore([]tlsterm.CertFile{f}, caFile, nil)
			if err != nil {
				t.Fatal(err)
			}
			srv := serve(t, tlsterm.NewConfig(store, tlsterm.Options{
				ClientAuth:            tls.VerifyClientCertIfGiven,
				SessionTicketLifetime: time.Hour,
			}))
			anonymous := resumeClient(serverCA, name, v)
			alice := resumeClient(serverCA, name, v)
			aliceCert := oldCA.client(t, "alice")
			alice.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &aliceCert, nil
			}
			for _, client := range []*tls.Config{anonymous, alice} {
				c, _ := srv.mustConnect(t, client)
				echo(t, c)
				c.Close()
			}

			writeFile(t, caFile, newCA.pem)
			if err := store.Reload(); err != nil {
				t.Fatal(err)
			}
			c, _ := srv.mustConnect(t, anonymous)
			if !c.ConnectionState().DidResume {
				t.Error("a client without a certificate did not resume after the CA reload")
			}
			echo(t, c)

			a := srv.connect(t, alice)
			if a.server.err == nil {
				t.Errorf("a client certificate from the old CA was accepted after the reload (resumed: %v)", a.server.state.DidResume)
			}
		})
	}
}
