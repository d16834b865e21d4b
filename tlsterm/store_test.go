package tlsterm_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice/tlsterm"
)

func TestStoreSNI(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	def, _ := ca.leaf(t, dir, "default", "default", ecdsaKey, "default.test")
	exact, _ := ca.leaf(t, dir, "www", "exact", ecdsaKey, "www.example.com")
	wild, _ := ca.leaf(t, dir, "wild", "wildcard", ecdsaKey, "*.example.com")
	store := newStore(t, def, exact, wild)
	srv := serve(t, tlsterm.NewConfig(store, tlsterm.Options{}))

	tests := []struct {
		name string
		sni  string
		want string // subject CN of the certificate served
	}{
		{"exact, though the wildcard matches too", "www.example.com", "exact"},
		{"wildcard", "a.example.com", "wildcard"},
		{"wildcard is not the apex", "example.com", "default"},
		{"wildcard covers one label only", "a.b.example.com", "default"},
		{"unknown name", "other.test", "default"},
		{"no SNI", "", "default"},
		{"default by its own name", "default.test", "default"},
		{"exact upper case", "WWW.Example.COM", "exact"},
		{"exact trailing dot", "www.example.com.", "exact"},
		{"wildcard upper case and trailing dot", "A.EXAMPLE.COM.", "wildcard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The store alone, with the name exactly as given.
			c, err := store.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni})
			if err != nil {
				t.Fatalf("GetCertificate: %v", err)
			}
			if got := c.Leaf.Subject.CommonName; got != tt.want {
				t.Errorf("GetCertificate(%q) = %q, want %q", tt.sni, got, tt.want)
			}

			// Over the wire. The client does not verify, because the
			// default certificate is not valid for the names that fall
			// back to it; which certificate came is what matters here.
			conn, _ := srv.mustConnect(t, &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true})
			if got := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; got != tt.want {
				t.Errorf("handshake with SNI %q served %q, want %q", tt.sni, got, tt.want)
			}
		})
	}
}

func TestStoreSNIVerified(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	def, _ := ca.leaf(t, dir, "default", "default", ecdsaKey, "default.test")
	wild, _ := ca.leaf(t, dir, "wild", "wildcard", ecdsaKey, "*.example.com")
	srv := serve(t, tlsterm.NewConfig(newStore(t, def, wild), tlsterm.Options{}))

	for _, name := range []string{"default.test", "a.example.com"} {
		conn, _ := srv.mustConnect(t, clientConfig(ca, name))
		echo(t, conn)
	}
}

func TestStoreNames(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	a, _ := ca.leaf(t, dir, "a", "a", ecdsaKey, "A.example.com", "b.example.com.")
	w, _ := ca.leaf(t, dir, "w", "w", ecdsaKey, "*.example.org")
	got := newStore(t, a, w).Names()
	slices.Sort(got)
	want := []string{"*.example.org", "a.example.com", "b.example.com"}
	if !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
}

// A name served by an RSA and an ECDSA certificate: each client gets the
// one it supports, whichever was configured first.
func TestStoreKeyType(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	const name = "dual.example.com"
	rsaFile, _ := ca.leaf(t, dir, "rsa", "rsa", rsaKey, name)
	ecFile, _ := ca.leaf(t, dir, "ecdsa", "ecdsa", ecdsaKey, name)

	ecdsaOnly := func() *tls.Config {
		c := clientConfig(ca, name)
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		}
		return c
	}
	rsaOnly := func() *tls.Config {
		c := clientConfig(ca, name)
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		}
		return c
	}
	both := func() *tls.Config { return clientConfig(ca, name) }

	orders := []struct {
		name  string
		files []tlsterm.CertFile
		first x509.PublicKeyAlgorithm
	}{
		{"RSA first", []tlsterm.CertFile{rsaFile, ecFile}, x509.RSA},
		{"ECDSA first", []tlsterm.CertFile{ecFile, rsaFile}, x509.ECDSA},
	}
	clients := []struct {
		name   string
		config func() *tls.Config
		want   x509.PublicKeyAlgorithm // 0: the first configured
	}{
		{"ECDSA-only client", ecdsaOnly, x509.ECDSA},
		{"RSA-only client", rsaOnly, x509.RSA},
		{"client supporting both", both, 0},
	}
	for _, o := range orders {
		store := newStore(t, o.files...)
		t.Run(o.name+"/hello that supports neither", func(t *testing.T) {
			// No versions, suites or schemes: the store cannot tell, and
			// falls back to the first configured.
			c, err := store.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Leaf.PublicKeyAlgorithm; got != o.first {
				t.Errorf("picked a %v certificate, want the first configured (%v)", got, o.first)
			}
		})
		srv := serve(t, tlsterm.NewConfig(store, tlsterm.Options{}))
		for _, c := range clients {
			t.Run(o.name+"/"+c.name, func(t *testing.T) {
				want := c.want
				if want == 0 {
					want = o.first
				}
				conn, _ := srv.mustConnect(t, c.config())
				if got := conn.ConnectionState().PeerCertificates[0].PublicKeyAlgorithm; got != want {
					t.Errorf("served a %v certificate, want %v", got, want)
				}
			})
		}
	}
}

// certErrors returns the *CertErrors joined in err.
func certErrors(t *testing.T, err error) []*tlsterm.CertError {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []*tlsterm.CertError
	for _, e := range errs {
		var ce *tlsterm.CertError
		if !errors.As(e, &ce) {
			t.Fatalf("error %q is not a *tlsterm.CertError", e)
		}
		out = append(out, ce)
	}
	return out
}

func TestNewStoreErrors(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	good, _ := ca.leaf(t, dir, "good", "good", ecdsaKey, "good.example.com")
	other, _ := ca.leaf(t, dir, "other", "other", ecdsaKey, "other.example.com")
	mismatched := tlsterm.CertFile{Cert: good.Cert, Key: other.Key}
	noCert := tlsterm.CertFile{Cert: filepath.Join(dir, "missing.crt"), Key: good.Key}
	noKey := tlsterm.CertFile{Cert: good.Cert, Key: filepath.Join(dir, "missing.key")}
	garbage := tlsterm.CertFile{Cert: filepath.Join(dir, "garbage.crt"), Key: good.Key}
	writeFile(t, garbage.Cert, []byte("not a certificate\n"))
	expiry := time.Now().Add(-48 * time.Hour)
	expired, _ := ca.leafValid(t, dir, "expired", expiry.Add(-24*time.Hour), expiry, "expired.example.com")
	pkcs8 := tlsterm.CertFile{Cert: good.Cert, Key: filepath.Join(dir, "pkcs8.key")}
	writeFile(t, pkcs8.Key, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("ciphertext")}))
	legacy := tlsterm.CertFile{Cert: good.Cert, Key: filepath.Join(dir, "legacy.pem")}
	writeFile(t, legacy.Key, pem.EncodeToMemory(&pem.Block{
		Type:    "EC PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,000102030405060708090A0B0C0D0E0F"},
		Bytes:   []byte("ciphertext"),
	}))

	tests := []struct {
		name        string
		files       []tlsterm.CertFile
		wantIndexes []int
		wantMsg     []string
	}{
		{
			name:        "key does not match",
			files:       []tlsterm.CertFile{good, mismatched},
			wantIndexes: []int{1},
			wantMsg:     []string{"certificate 1", good.Cert, other.Key, "private key does not match"},
		},
		{
			name:        "missing certificate file",
			files:       []tlsterm.CertFile{noCert},
			wantIndexes: []int{0},
			wantMsg:     []string{"certificate 0", noCert.Cert},
		},
		{
			name:        "missing key file",
			files:       []tlsterm.CertFile{good, noKey},
			wantIndexes: []int{1},
			wantMsg:     []string{"certificate 1", noKey.Key},
		},
		{
			name:        "not PEM",
			files:       []tlsterm.CertFile{garbage},
			wantIndexes: []int{0},
			wantMsg:     []string{garbage.Cert},
		},
		{
			name:        "expired certificate",
			files:       []tlsterm.CertFile{good, expired},
			wantIndexes: []int{1},
			wantMsg:     []string{"certificate 1", expired.Cert, "certificate expired on " + expiry.UTC().Format(time.DateOnly) + " (NotAfter)"},
		},
		{
			name:        "encrypted PKCS #8 key",
			files:       []tlsterm.CertFile{pkcs8},
			wantIndexes: []int{0},
			wantMsg: []string{"certificate 0", "load key " + pkcs8.Key + ": it is encrypted with a passphrase, and sluice cannot read passphrases: " +
				`decrypt it with "openssl pkey -in ` + pkcs8.Key + " -out " + filepath.Join(dir, "pkcs8-plain.key") + `"`},
		},
		{
			name:        "encrypted legacy OpenSSL key",
			files:       []tlsterm.CertFile{good, legacy},
			wantIndexes: []int{1},
			wantMsg:     []string{"certificate 1", "load key " + legacy.Key + ": it is encrypted with a passphrase", "openssl pkey -in " + legacy.Key + " -out " + filepath.Join(dir, "legacy-plain.pem")},
		},
		{
			name:        "every broken file is reported",
			files:       []tlsterm.CertFile{noCert, good, mismatched},
			wantIndexes: []int{0, 2},
			wantMsg:     []string{"certificate 0", noCert.Cert, "certificate 2", other.Key},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tlsterm.NewStore(tt.files, "", nil)
			if err == nil {
				t.Fatal("NewStore succeeded, want an error")
			}
			if s != nil {
				t.Error("NewStore returned a store along with its error")
			}
			var idx []int
			for _, ce := range certErrors(t, err) {
				idx = append(idx, ce.Index)
			}
			if !slices.Equal(idx, tt.wantIndexes) {
				t.Errorf("CertError indexes = %v, want %v", idx, tt.wantIndexes)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestStoreReload(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	const name = "reload.example.com"
	a, _ := ca.leaf(t, dir, "a", "a", ecdsaKey, "a.example.com")
	b, old := ca.leaf(t, dir, "b", "b", ecdsaKey, name)
	store := newStore(t, a, b)
	srv := serve(t, tlsterm.NewConfig(store, tlsterm.Options{}))

	serial := func(t *testing.T) string {
		t.Helper()
		conn, _ := srv.mustConnect(t, clientConfig(ca, name))
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}

	open, _ := srv.mustConnect(t, clientConfig(ca, name))
	if got, want := open.ConnectionState().PeerCertificates[0].SerialNumber.String(), old.SerialNumber.String(); got != want {
		t.Fatalf("before reload: serial %s, want %s", got, want)
	}

	// Renew b on disk, in place.
	_, renewed := ca.leaf(t, dir, "b", "b", ecdsaKey, name)
	if err := store.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got, want := serial(t), renewed.SerialNumber.String(); got != want {
		t.Errorf("after reload: serial %s, want the renewed %s (old was %s)", got, want, old.SerialNumber)
	}
	echo(t, open) // a conn made before the reload is unaffected

	// Break b: the store keeps serving the renewed certificate.
	writeFile(t, b.Key, []byte("not a key\n"))
	err := store.Reload()
	if err == nil {
		t.Fatal("Reload with a broken key succeeded")
	}
	ces := certErrors(t, err)
	if len(ces) != 1 || ces[0].Index != 1 {
		t.Errorf("Reload error %q: want one *CertError with Index 1", err)
	}
	if !strings.Contains(err.Error(), "certificate 1") || !strings.Contains(err.Error(), b.Key) {
		t.Errorf("Reload error %q does not name certificate 1 and %s", err, b.Key)
	}
	if got, want := serial(t), renewed.SerialNumber.String(); got != want {
		t.Errorf("after failed reload: serial %s, want the last good %s", got, want)
	}
	echo(t, open)
}

// TestStoreReloadExpired replaces a certificate on disk with an expired
// one: Reload fails, naming it, and the store keeps serving the old one.
func TestStoreReloadExpired(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	const name = "expiring.example.com"
	f, old := ca.leaf(t, dir, "a", "a", ecdsaKey, name)
	store := newStore(t, f)
	srv := serve(t, tlsterm.NewConfig(store, tlsterm.Options{}))

	expiry := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	if time.Now().Before(expiry) {
		expiry = time.Now().Add(-time.Hour)
	}
	ca.leafValid(t, dir, "a", expiry.Add(-90*24*time.Hour), expiry, name)
	err := store.Reload()
	want := "certificate 0: load certificate " + f.Cert + ": certificate expired on " + expiry.Format(time.DateOnly) + " (NotAfter)"
	if err == nil || err.Error() != want {
		t.Fatalf("Reload = %v, want %q", err, want)
	}
	conn, _ := srv.mustConnect(t, clientConfig(ca, name))
	if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(old.SerialNumber) != 0 {
		t.Errorf("after the failed reload: serial %s, want the old %s", got, old.SerialNumber)
	}
}

// TestStoreNotYetValid loads a certificate valid from tomorrow: accepted,
// since it becomes good by itself, with a warning.
func TestStoreNotYetValid(t *testing.T) {
	ca := newCA(t, "test CA")
	start := time.Now().Add(24 * time.Hour)
	f, _ := ca.leafValid(t, t.TempDir(), "early", start, start.Add(90*24*time.Hour), "early.example.com")
	var logs bytes.Buffer
	if _, err := tlsterm.NewStore([]tlsterm.CertFile{f}, "", slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"certificate is not yet valid") || !strings.Contains(logs.String(), f.Cert) {
		t.Errorf("log = %q, want a warning naming %s", logs.String(), f.Cert)
	}
}

func TestStoreSelfSigned(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	store, err := tlsterm.NewStore(nil, "", logger)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	if !store.SelfSigned() {
		t.Error("SelfSigned() = false for a store with no files")
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "self-signed") {
		t.Errorf("want a warning about the self-signed certificate, logged:\n%s", out)
	}
	if err := store.Reload(); err != nil {
		t.Errorf("Reload of a self-signed store: %v", err)
	}

	srv := serve(t, tlsterm.NewConfig(store, tlsterm.Options{}))
	for _, sni := range []string{"", "localhost"} {
		conn, _ := srv.mustConnect(t, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		leaf := conn.ConnectionState().PeerCertificates[0]
		roots := x509.NewCertPool()
		roots.AddCert(leaf)
		for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
				t.Errorf("SNI %q: self-signed certificate does not verify for %s: %v", sni, host, err)
			}
		}
		echo(t, conn)
	}
}

func TestStoreWithFilesIsNotSelfSigned(t *testing.T) {
	ca := newCA(t, "test CA")
	f, _ := ca.leaf(t, t.TempDir(), "a", "a", ecdsaKey, "a.example.com")
	var logs bytes.Buffer
	store, err := tlsterm.NewStore([]tlsterm.CertFile{f}, "", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	if store.SelfSigned() {
		t.Error("SelfSigned() = true for a store with files")
	}
	if logs.Len() > 0 {
		t.Errorf("unexpected logs:\n%s", logs.String())
	}
}

func TestStoreZeroValue(t *testing.T) {
	var s tlsterm.Store
	if _, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com"}); !errors.Is(err, tlsterm.ErrNoCertificate) {
		t.Errorf("GetCertificate on an empty store: err = %v, want ErrNoCertificate", err)
	}
}

func TestStoreCovers(t *testing.T) {
	ca := newCA(t, "covers CA")
	dir := t.TempDir()
	def, _ := ca.leaf(t, dir, "default", "default", ecdsaKey, "default.test", "alt.test")
	wild, _ := ca.leaf(t, dir, "wild", "wild", ecdsaKey, "*.example.com")
	s := newStore(t, def, wild)
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"default.test", true},
		{"alt.test", true}, // a name of the default certificate counts
		{"ALT.test.", true},
		{"a.example.com", true},
		{"*.example.com", true},
		{"example.com", false},
		{"a.b.example.com", false},
		{"*.b.example.com", false},
		{"other.test", false},
		{"", false},
	} {
		if got := s.Covers(tc.name); got != tc.want {
			t.Errorf("Covers(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
