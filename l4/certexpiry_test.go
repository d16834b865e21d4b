package l4

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sluice/tlsterm"
)

func TestWarnExpiring(t *testing.T) {
	now := time.Now().Truncate(time.Second) // certificates keep whole seconds
	dir := t.TempDir()
	ca, caKey := newCA(t, "test CA")
	soon := writeCertUntil(t, dir, ca, caKey, "soon.example.com", now.Add(10*24*time.Hour))
	later := writeCertUntil(t, dir, ca, caKey, "later.example.com", now.Add(90*24*time.Hour))

	type warning struct {
		index int
		file  tlsterm.CertFile
		name  string
	}
	for _, tc := range []struct {
		name  string
		files []tlsterm.CertFile
		want  []warning
	}{
		{"in 10 days", []tlsterm.CertFile{soon}, []warning{{0, soon, "soon.example.com"}}},
		{"in 90 days", []tlsterm.CertFile{later}, nil},
		{"second of two", []tlsterm.CertFile{later, soon}, []warning{{1, soon, "soon.example.com"}}},
		{"self-signed", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, err := tlsterm.NewStore(tc.files, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&buf, nil))
			warnExpiring(logger, "web", "listener[2].tls", store, now)

			var got []map[string]any
			for dec := json.NewDecoder(&buf); dec.More(); {
				var rec map[string]any
				if err := dec.Decode(&rec); err != nil {
					t.Fatal(err)
				}
				got = append(got, rec)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("logged %d lines, want %d:\n%v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				want := map[string]any{
					"level":     "WARN",
					"msg":       "certificate expires soon",
					"listener":  "web",
					"key":       fmt.Sprintf("listener[2].tls.certificates[%d].cert", w.index),
					"file":      w.file.Cert,
					"subject":   w.name,
					"not_after": now.Add(10 * 24 * time.Hour).UTC().Format(time.RFC3339),
					"days_left": float64(10),
				}
				for k, v := range want {
					if got[i][k] != v {
						t.Errorf("line %d: %s = %v, want %v", i, k, got[i][k], v)
					}
				}
			}
		})
	}
}

// writeCertUntil writes a server certificate for name, signed by ca and
// valid until notAfter, and its key into dir.
func writeCertUntil(t *testing.T, dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, notAfter time.Time) tlsterm.CertFile {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    notAfter.Add(-365 * 24 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := tlsterm.CertFile{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+".key")}
	for path, b := range map[string]*pem.Block{
		f.Cert: {Type: "CERTIFICATE", Bytes: der},
		f.Key:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}
