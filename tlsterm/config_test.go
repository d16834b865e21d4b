package tlsterm_test

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sluice/tlsterm"
)

func TestNewConfigDefaults(t *testing.T) {
	store := newStore(t)
	cfg := tlsterm.NewConfig(store, tlsterm.Options{})
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %s, want TLSv1.2", tlsterm.VersionName(cfg.MinVersion))
	}
	if cfg.MaxVersion != 0 {
		t.Errorf("MaxVersion = %s, want 0 (the newest crypto/tls supports)", tlsterm.VersionName(cfg.MaxVersion))
	}
	if !slices.Equal(cfg.CipherSuites, tlsterm.DefaultCipherSuites) {
		t.Errorf("CipherSuites = %v, want DefaultCipherSuites", cfg.CipherSuites)
	}
	if want := []tls.CurveID{tls.X25519, tls.CurveP256}; !slices.Equal(cfg.CurvePreferences, want) {
		t.Errorf("CurvePreferences = %v, want %v", cfg.CurvePreferences, want)
	}
	if cfg.ClientAuth != tls.NoClientCert || cfg.ClientCAs != nil {
		t.Errorf("ClientAuth = %v, ClientCAs = %v; want no client certificates", cfg.ClientAuth, cfg.ClientCAs)
	}
	if cfg.SessionTicketsDisabled {
		t.Error("SessionTicketsDisabled = true, want resumption on by default")
	}
	if cfg.NextProtos != nil {
		t.Errorf("NextProtos = %q, want none", cfg.NextProtos)
	}
	if cfg.GetCertificate == nil || cfg.Certificates != nil {
		t.Error("certificates must come from the store through GetCertificate")
	}
}

func TestNewConfigOptions(t *testing.T) {
	pool := x509.NewCertPool()
	o := tlsterm.Options{
		MinVersion:             tls.VersionTLS13,
		CipherSuites:           []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		Curves:                 []tls.CurveID{tls.CurveP384},
		NextProtos:             []string{"h2"},
		ClientCAs:              pool,
		ClientAuth:             tls.RequireAndVerifyClientCert,
		SessionTicketsDisabled: true,
	}
	cfg := tlsterm.NewConfig(newStore(t), o)
	if cfg.MinVersion != o.MinVersion ||
		!slices.Equal(cfg.CipherSuites, o.CipherSuites) ||
		!slices.Equal(cfg.CurvePreferences, o.Curves) ||
		!slices.Equal(cfg.NextProtos, o.NextProtos) ||
		cfg.ClientCAs != pool ||
		cfg.ClientAuth != o.ClientAuth ||
		!cfg.SessionTicketsDisabled {
		t.Errorf("NewConfig did not carry over the options: %+v", cfg)
	}
}

// TestNextProtosFor: the protocols offered are chosen per client, and one
// config serves every client offered the same protocols.
func TestNextProtosFor(t *testing.T) {
	cfg := tlsterm.NewConfig(newStore(t), tlsterm.Options{
		NextProtos: []string{"h2", "http/1.1"},
		NextProtosFor: func(h *tls.ClientHelloInfo) []string {
			if h.ServerName == "h1.test" {
				return []string{"http/1.1"}
			}
			return []string{"h2", "http/1.1"}
		},
	})
	get := func(name string) *tls.Config {
		t.Helper()
		c, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{ServerName: name, SupportedProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	h1, h2 := get("h1.test"), get("h2.test")
	if !slices.Equal(h1.NextProtos, []string{"http/1.1"}) || !slices.Equal(h2.NextProtos, []string{"h2", "http/1.1"}) {
		t.Errorf("offers %q and %q", h1.NextProtos, h2.NextProtos)
	}
	if get("h1.test") != h1 || get("other.test") != h2 {
		t.Error("a config was built again for an offer already seen")
	}
	if h1.GetConfigForClient != nil {
		t.Error("the config handed out asks again")
	}
}

// Every default suite passes ParseCipherSuite, so an operator can write the
// defaults out explicitly.
func TestDefaultCipherSuitesParse(t *testing.T) {
	for _, id := range tlsterm.DefaultCipherSuites {
		name := tls.CipherSuiteName(id)
		if got, err := tlsterm.ParseCipherSuite(name); err != nil || got != id {
			t.Errorf("ParseCipherSuite(%s) = %#04x, %v", name, got, err)
		}
	}
}

func TestConfigNegotiation(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	const name = "example.com"
	ec, _ := ca.leaf(t, dir, "ecdsa", "ecdsa", ecdsaKey, name)
	rs, _ := ca.leaf(t, dir, "rsa", "rsa", rsaKey, name)
	store := newStore(t, ec, rs)

	const cbc = tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA
	tests := []struct {
		name    string
		opts    tlsterm.Options
		client  *tls.Config // RootCAs and ServerName are filled in
		wantErr string      // in the server's handshake error; "" for success
		version string
		alpn    string
	}{
		{name: "default client", client: &tls.Config{}, version: "TLSv1.3"},
		{name: "TLS 1.2 client", client: &tls.Config{MaxVersion: tls.VersionTLS12}, version: "TLSv1.2"},
		{
			name:    "TLS 1.1 client refused",
			client:  &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
			wantErr: "version",
		},
		{
			name:    "CBC-only client refused",
			client:  &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{cbc}},
			wantErr: "cipher suite",
		},
		{
			// Control for the case above: the same client is refused
			// because of the default suites and nothing else.
			name:    "CBC-only client accepted when CBC is configured",
			opts:    tlsterm.Options{CipherSuites: []uint16{cbc}},
			client:  &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{cbc}},
			version: "TLSv1.2",
		},
		{
			name:    "min 1.3 refuses a TLS 1.2 client",
			opts:    tlsterm.Options{MinVersion: tls.VersionTLS13},
			client:  &tls.Config{MaxVersion: tls.VersionTLS12},
			wantErr: "version",
		},
		{
			name:    "min 1.3 accepts a TLS 1.3 client",
			opts:    tlsterm.Options{MinVersion: tls.VersionTLS13},
			client:  &tls.Config{},
			version: "TLSv1.3",
		},
		{
			name:    "client with only P-384 refused by default",
			client:  &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP384}},
			wantErr: "key exchange",
		},
		{
			name:    "client with only P-384 accepted when P-384 is configured",
			opts:    tlsterm.Options{Curves: []tls.CurveID{tls.CurveP384}},
			client:  &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP384}},
			version: "TLSv1.3",
		},
		{
			name:    "ALPN",
			opts:    tlsterm.Options{NextProtos: []string{"h2", "http/1.1"}},
			client:  &tls.Config{NextProtos: []string{"http/1.1"}},
			version: "TLSv1.3",
			alpn:    "http/1.1",
		},
		{
			name:    "ALPN in the server's order of preference",
			opts:    tlsterm.Options{NextProtos: []string{"h2", "http/1.1"}},
			client:  &tls.Config{NextProtos: []string{"http/1.1", "h2"}},
			version: "TLSv1.3",
			alpn:    "h2",
		},
		{
			name:    "no ALPN configured",
			client:  &tls.Config{NextProtos: []string{"h2"}},
			version: "TLSv1.3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tlsterm.NewConfig(store, tt.opts))
			tt.client.RootCAs = ca.pool
			tt.client.ServerName = name
			a := srv.connect(t, tt.client)
			if tt.wantErr != "" {
				if a.server.err == nil || a.clientErr == nil {
					t.Fatalf("handshake succeeded (client err %v, server err %v), want it refused", a.clientErr, a.server.err)
				}
				if !strings.Contains(a.server.err.Error(), tt.wantErr) {
					t.Errorf("server error %q does not mention %q", a.server.err, tt.wantErr)
				}
				return
			}
			if a.clientErr != nil || a.server.err != nil {
				t.Fatalf("handshake: client err %v, server err %v", a.clientErr, a.server.err)
			}
			echo(t, a.conn)
			info := tlsterm.Describe(a.server.state)
			if info.Version != tt.version {
				t.Errorf("Version = %s, want %s", info.Version, tt.version)
			}
			if info.ALPN != tt.alpn {
				t.Errorf("ALPN = %q, want %q", info.ALPN, tt.alpn)
			}
			if got := a.conn.ConnectionState().NegotiatedProtocol; got != tt.alpn {
				t.Errorf("client ALPN = %q, want %q", got, tt.alpn)
			}
			if info.SNI != name {
				t.Errorf("SNI = %q, want %q", info.SNI, name)
			}
			if info.Cipher != tls.CipherSuiteName(a.server.state.CipherSuite) || strings.HasPrefix(info.Cipher, "0x") {
				t.Errorf("Cipher = %q", info.Cipher)
			}
		})
	}
}

func TestSessionResumption(t *testing.T) {
	ca := newCA(t, "test CA")
	const name = "example.com"
	f, _ := ca.leaf(t, t.TempDir(), "a", "a", ecdsaKey, name)
	store := newStore(t, f)

	tests := []struct {
		name       string
		opts       tlsterm.Options
		maxVersion uint16
		wantResume bool
	}{
		{"TLS 1.3 by default", tlsterm.Options{}, 0, true},
		{"TLS 1.2 by default", tlsterm.Options{}, tls.VersionTLS12, true},
		{"TLS 1.3 with tickets disabled", tlsterm.Options{SessionTicketsDisabled: true}, 0, false},
		{"TLS 1.2 with tickets disabled", tlsterm.Options{SessionTicketsDisabled: true}, tls.VersionTLS12, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tlsterm.NewConfig(store, tt.opts))
			client := clientConfig(ca, name)
			client.MaxVersion = tt.maxVersion
			client.ClientSessionCache = tls.NewLRUClientSessionCache(4)

			first, state := srv.mustConnect(t, client)
			if first.ConnectionState().DidResume || state.DidResume {
				t.Fatal("the first connection resumed")
			}
			echo(t, first) // a TLS 1.3 ticket arrives after the handshake; reading processes it

			second, state := srv.mustConnect(t, client)
			if got := second.ConnectionState().DidResume; got != tt.wantResume {
				t.Errorf("client DidResume = %v, want %v", got, tt.wantResume)
			}
			if got := tlsterm.Describe(state).Resumed; got != tt.wantResume {
				t.Errorf("server Describe().Resumed = %v, want %v", got, tt.wantResume)
			}
			echo(t, second)
		})
	}
}

func TestClientAuth(t *testing.T) {
	serverCA := newCA(t, "server CA")
	clientCA := newCA(t, "client CA")
	const name = "example.com"
	f, _ := serverCA.leaf(t, t.TempDir(), "a", "a", ecdsaKey, name)
	store := newStore(t, f)
	alice := clientCA.client(t, "alice")
	mallory := serverCA.client(t, "mallory") // signed by a CA the server does not trust for clients

	tests := []struct {
		name     string
		auth     string // as ParseClientAuth takes it
		cert     *tls.Certificate
		version  uint16 // client MaxVersion
		wantFail bool
		wantCN   string
	}{
		{name: "require without a certificate", auth: "require", wantFail: true},
		{name: "require without a certificate, TLS 1.2", auth: "require", version: tls.VersionTLS12, wantFail: true},
		{name: "require with a certificate from the client CA", auth: "require", cert: &alice, wantCN: "alice"},
		{name: "require with a certificate from the client CA, TLS 1.2", auth: "require", cert: &alice, version: tls.VersionTLS12, wantCN: "alice"},
		{name: "require with a certificate from another CA", auth: "require", cert: &mallory, wantFail: true},
		{name: "request without a certificate", auth: "request"},
		{name: "request with a certificate from the client CA", auth: "request", cert: &alice, wantCN: "alice"},
		{name: "request with a certificate from another CA", auth: "request", cert: &mallory, wantFail: true},
		{name: "none ignores a certificate", auth: "none", cert: &alice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth, err := tlsterm.ParseClientAuth(tt.auth)
			if err != nil {
				t.Fatal(err)
			}
			srv := serve(t, tlsterm.NewConfig(store, tlsterm.Options{ClientCAs: clientCA.pool, ClientAuth: auth}))
			client := clientConfig(serverCA, name)
			client.MaxVersion = tt.version
			if tt.cert != nil {
				// Send the certificate whatever CAs the server names, so
				// that the server is the one to judge it.
				cert := tt.cert
				client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return cert, nil
				}
			}
			a := srv.connect(t, client)
			if tt.wantFail {
				// In TLS 1.3 the client may finish before the server has
				// judged its certificate; the server's verdict counts.
				if a.server.err == nil {
					t.Fatal("server accepted the handshake, want it refused")
				}
				return
			}
			if a.clientErr != nil || a.server.err != nil {
				t.Fatalf("handshake: client err %v, server err %v", a.clientErr, a.server.err)
			}
			echo(t, a.conn)
			info := tlsterm.Describe(a.server.state)
			if info.ClientCN != tt.wantCN {
				t.Errorf("ClientCN = %q, want %q", info.ClientCN, tt.wantCN)
			}
			if want := tt.wantCN != ""; info.ClientCert != want {
				t.Errorf("ClientCert = %v, want %v", info.ClientCert, want)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    uint16
		wantErr bool
	}{
		{"1.2", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS13, false},
		{"TLSv1.2", tls.VersionTLS12, false},
		{"TLSv1.3", tls.VersionTLS13, false},
		{"1.1", 0, true},
		{"1.0", 0, true},
		{"TLSv1.1", 0, true},
		{"", 0, true},
		{"1.4", 0, true},
		{"13", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := tlsterm.ParseVersion(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseVersion(%q) = %#04x, %v; want %#04x, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "1.2") {
				t.Errorf("error %q does not say what is accepted", err)
			}
		})
	}
}

func TestParseCipherSuite(t *testing.T) {
	tests := []struct {
		in      string
		want    uint16
		wantErr string // substring; "" for success
	}{
		{in: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", want: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{in: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", want: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{in: "ECDHE-RSA-AES128-GCM-SHA256", want: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{in: "ECDHE-ECDSA-AES256-GCM-SHA384", want: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{in: "ECDHE-RSA-CHACHA20-POLY1305", want: tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
		{in: "TLS_RSA_WITH_RC4_128_SHA", wantErr: "insecure"},
		{in: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", wantErr: "insecure"},
		{in: "TLS_RSA_WITH_AES_128_GCM_SHA256", wantErr: "refused"},
		{in: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", wantErr: "not ECDHE with AEAD"},
		{in: "TLS_AES_128_GCM_SHA256", wantErr: "TLS 1.3"},
		{in: "TLS_CHACHA20_POLY1305_SHA256", wantErr: "TLS 1.3"},
		{in: "ECDHE-RSA-AES128-SHA", wantErr: "unknown"},
		{in: "tls_ecdhe_rsa_with_aes_128_gcm_sha256", wantErr: "unknown"},
		{in: "", wantErr: "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := tlsterm.ParseCipherSuite(tt.in)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParseCipherSuite(%q) = %#04x, %v; want %#04x", tt.in, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseCipherSuite(%q) = %#04x, want an error", tt.in, got)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseCurve(t *testing.T) {
	tests := []struct {
		in      string
		want    tls.CurveID
		wantErr bool
	}{
		{"X25519", tls.X25519, false},
		{"x25519", tls.X25519, false},
		{"P-256", tls.CurveP256, false},
		{"p-256", tls.CurveP256, false},
		{"prime256v1", tls.CurveP256, false},
		{"SECP384R1", tls.CurveP384, false},
		{"P-521", tls.CurveP521, false},
		{"X25519MLKEM768", tls.X25519MLKEM768, false},
		{"SecP256r1MLKEM768", tls.SecP256r1MLKEM768, false},
		{"", 0, true},
		{"P-224", 0, true},
		{"curve25519", 0, true},
		{"P256", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := tlsterm.ParseCurve(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseCurve(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseClientAuth(t *testing.T) {
	tests := []struct {
		in      string
		want    tls.ClientAuthType
		wantErr bool
	}{
		{"", tls.NoClientCert, false},
		{"none", tls.NoClientCert, false},
		{"request", tls.VerifyClientCertIfGiven, false},
		{"require", tls.RequireAndVerifyClientCert, false},
		{"Require", 0, true},
		{"optional", 0, true},
		{"verify", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := tlsterm.ParseClientAuth(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseClientAuth(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestLoadCertPool(t *testing.T) {
	ca := newCA(t, "client CA")
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	writeFile(t, good, ca.pem)
	notPEM := filepath.Join(dir, "junk.pem")
	writeFile(t, notPEM, []byte("junk\n"))
	missing := filepath.Join(dir, "missing.pem")

	pool, err := tlsterm.LoadCertPool(good)
	if err != nil {
		t.Fatalf("LoadCertPool: %v", err)
	}
	if !pool.Equal(ca.pool) {
		t.Error("pool does not hold exactly the CA")
	}
	for _, f := range []string{notPEM, missing} {
		if _, err := tlsterm.LoadCertPool(f); err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("LoadCertPool(%s) error = %v, want one naming the file", f, err)
		}
	}
}
