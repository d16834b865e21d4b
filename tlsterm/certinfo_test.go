package tlsterm_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"testing"
	"time"

	"sluice/tlsterm"
)

// TestStoreCertificates: one CertInfo per configured certificate, in
// configured order, naming the files as given to NewStore.
func TestStoreCertificates(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	now := time.Now().Truncate(time.Second)
	soon := now.Add(10 * 24 * time.Hour)
	later := now.Add(90 * 24 * time.Hour)
	a, _ := ca.leafValid(t, dir, "a", now.Add(-time.Hour), later, "a.example.com")
	b, _ := ca.leafValid(t, dir, "b", now.Add(-time.Hour), soon, "b.example.com")
	files := []tlsterm.CertFile{a, b}
	store := newStore(t, files...)
	files[0] = tlsterm.CertFile{Cert: "changed.crt", Key: "changed.key"} // the store keeps its own copy

	want := []tlsterm.CertInfo{
		{Index: 0, File: a.Cert, KeyFile: a.Key, Subject: "a", NotAfter: later},
		{Index: 1, File: b.Cert, KeyFile: b.Key, Subject: "b", NotAfter: soon},
	}
	checkCertInfos(t, store.Certificates(), want)
}

// TestCertInfoSubject: the subject is the common name, else the first DNS
// name, else the first IP address.
func TestCertInfoSubject(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		tmpl x509.Certificate
		want string
	}{
		{"common name", x509.Certificate{Subject: pkix.Name{CommonName: "cn"}, DNSNames: []string{"dns.example.com"}}, "cn"},
		{"dns name", x509.Certificate{DNSNames: []string{"one.example.com", "two.example.com"}}, "one.example.com"},
		{"ip address", x509.Certificate{IPAddresses: []net.IP{net.ParseIP("192.0.2.7"), net.ParseIP("::1")}}, "192.0.2.7"},
		{"nothing", x509.Certificate{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := newKey(t, ecdsaKey)
			f := writePair(t, dir, tc.name, ca.sign(t, &tc.tmpl, key), key)
			got := newStore(t, f).Certificates()
			if len(got) != 1 || got[0].Subject != tc.want {
				t.Errorf("Certificates() = %+v, want one with Subject %q", got, tc.want)
			}
		})
	}
}

// TestStoreCertificatesSelfSigned: the in-memory certificate has Index -1
// and no files.
func TestStoreCertificatesSelfSigned(t *testing.T) {
	store := newStore(t)
	got := store.Certificates()
	if len(got) != 1 {
		t.Fatalf("Certificates() = %+v, want one", got)
	}
	c := got[0]
	if c.Index != -1 || c.File != "" || c.KeyFile != "" || c.Subject == "" {
		t.Errorf("Certificates()[0] = %+v, want Index -1, no files, a subject", c)
	}
	if c.NotAfter.Before(time.Now().Add(300 * 24 * time.Hour)) {
		t.Errorf("NotAfter = %v, want about a year from now", c.NotAfter)
	}
}

// TestStoreCertificatesReload: Certificates describes what is served, the
// renewed certificate after a Reload and still it after a failed one.
func TestStoreCertificatesReload(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	const name = "b.example.com"
	now := time.Now().Truncate(time.Second)
	a, _ := ca.leaf(t, dir, "a", "a", ecdsaKey, "a.example.com")
	b, _ := ca.leafValid(t, dir, "b", now.Add(-time.Hour), now.Add(10*24*time.Hour), name)
	store := newStore(t, a, b)

	served := func(t *testing.T) time.Time {
		t.Helper()
		c, err := store.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.NotAfter
	}

	renewed := now.Add(90 * 24 * time.Hour)
	ca.leafValid(t, dir, "b", now.Add(-time.Hour), renewed, name)
	if err := store.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	got := store.Certificates()
	checkCertInfos(t, got[1:], []tlsterm.CertInfo{{Index: 1, File: b.Cert, KeyFile: b.Key, Subject: "b", NotAfter: renewed}})
	if s := served(t); !got[1].NotAfter.Equal(s) {
		t.Errorf("after reload: NotAfter %v, but the store serves one until %v", got[1].NotAfter, s)
	}

	writeFile(t, b.Key, []byte("not a key\n"))
	if err := store.Reload(); err == nil {
		t.Fatal("Reload with a broken key succeeded")
	}
	got = store.Certificates()
	checkCertInfos(t, got[1:], []tlsterm.CertInfo{{Index: 1, File: b.Cert, KeyFile: b.Key, Subject: "b", NotAfter: renewed}})
	if s := served(t); !got[1].NotAfter.Equal(s) {
		t.Errorf("after failed reload: NotAfter %v, but the store serves one until %v", got[1].NotAfter, s)
	}
}

// TestStoreCertificatesDuringReload reads Certificates while Reload swaps
// the set, for the race detector.
func TestStoreCertificatesDuringReload(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	a, _ := ca.leaf(t, dir, "a", "a", ecdsaKey, "a.example.com")
	b, _ := ca.leaf(t, dir, "b", "b", ecdsaKey, "b.example.com")
	store := newStore(t, a, b)

	done := make(chan error)
	go func() {
		var err error
		for range 20 {
			if err = store.Reload(); err != nil {
				break
			}
		}
		done <- err
	}()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Reload: %v", err)
			}
			return
		default:
		}
		if got := store.Certificates(); len(got) != 2 || got[0].File != a.Cert || got[1].File != b.Cert {
			t.Fatalf("Certificates() = %+v during reload, want a then b", got)
		}
	}
}

func checkCertInfos(t *testing.T, got, want []tlsterm.CertInfo) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("Certificates() = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Index != w.Index || g.File != w.File || g.KeyFile != w.KeyFile || g.Subject != w.Subject || !g.NotAfter.Equal(w.NotAfter) {
			t.Errorf("Certificates()[%d] = %+v, want %+v", i, g, w)
		}
	}
}
