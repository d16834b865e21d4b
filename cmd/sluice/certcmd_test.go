package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice/tlsterm"
)

// TestCertWritesUsablePair runs "sluice cert" and checks that the pair
// loads as crypto/tls loads it, for the names asked, valid for -days, with
// the key readable by its owner only.
func TestCertWritesUsablePair(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "app.pem"), filepath.Join(dir, "app.key")
	// Certificates carry whole seconds.
	now := time.Now().Truncate(time.Second)
	var stdout, stderr bytes.Buffer
	err := runCert([]string{"-names", "localhost, 127.0.0.1,::1,app.example.com", "-cert", certFile, "-key", keyFile, "-days", "30"}, &stdout, &stderr, now)
	if err != nil {
		t.Fatalf("cert: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "wrote certificate "+certFile) || !strings.Contains(stdout.String(), keyFile) {
		t.Errorf("stdout = %q, want it to name both files", stdout.String())
	}

	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadX509KeyPair: %v", err)
	}
	leaf := pair.Leaf
	if key, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok || key.Curve != elliptic.P256() {
		t.Errorf("key is %T, want an ECDSA P-256 key", pair.PrivateKey)
	}
	if want := []string{"localhost", "app.example.com"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNS names = %q, want %q", leaf.DNSNames, want)
	}
	if want := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}; !slices.EqualFunc(leaf.IPAddresses, want, net.IP.Equal) {
		t.Errorf("IP addresses = %v, want %v", leaf.IPAddresses, want)
	}
	if want := now.Add(30 * 24 * time.Hour); !leaf.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %s, want %s (30 days from now)", leaf.NotAfter, want)
	}
	if leaf.NotBefore.After(now) {
		t.Errorf("NotBefore = %s, after now %s", leaf.NotBefore, now)
	}
	// A client that trusts the certificate itself accepts it for each name.
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, name := range []string{"localhost", "127.0.0.1", "::1", "app.example.com"} {
		opts := x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := leaf.Verify(opts); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example.com", Roots: roots, CurrentTime: now}); err == nil {
		t.Error("certificate verifies for a name it was not made for")
	}

	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %v, want 0600", perm)
	}
}

// TestCertDefaultDaysThroughRun checks the subcommand's dispatch and the
// default validity, a year.
func TestCertDefaultDaysThroughRun(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.key")
	var stdout, stderr bytes.Buffer
	before := time.Now()
	if err := run([]string{"cert", "-names", "localhost", "-cert", certFile, "-key", keyFile}, &stdout, &stderr, nil); err != nil {
		t.Fatalf("run cert: %v", err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := before.Add(365*24*time.Hour-time.Second), time.Now().Add(365*24*time.Hour)
	if na := pair.Leaf.NotAfter; na.Before(lo) || na.After(hi) {
		t.Errorf("NotAfter = %s, want a year from now (%s to %s)", na, lo, hi)
	}
}

// TestCertRefusesOverwrite checks that existing files are left as they are
// without -force, even when only one of the two exists, and replaced with
// -force, the key with mode 0600 whatever the old file's mode.
func TestCertRefusesOverwrite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing string // "cert" or "key"
	}{
		{"cert exists", "cert"},
		{"key exists", "key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"cert": filepath.Join(dir, "c.pem"), "key": filepath.Join(dir, "c.key")}
			old := files[tc.existing]
			if err := os.WriteFile(old, []byte("precious\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"-names", "localhost", "-cert", files["cert"], "-key", files["key"]}

			var stdout, stderr bytes.Buffer
			err := runCert(args, &stdout, &stderr, time.Now())
			if err == nil || !strings.Contains(err.Error(), old+" exists") || !strings.Contains(err.Error(), "-force") {
				t.Fatalf("cert over an existing %s = %v, want an error naming %s and -force", tc.existing, err, old)
			}
			if b, _ := os.ReadFile(old); string(b) != "precious\n" {
				t.Errorf("existing %s changed to %q", tc.existing, b)
			}
			for k, f := range files {
				if k == tc.existing {
					continue
				}
				if _, err := os.Lstat(f); err == nil {
					t.Errorf("refused run wrote the %s %s", k, f)
				}
			}

			if err := runCert(append(args, "-force"), &stdout, &stderr, time.Now()); err != nil {
				t.Fatalf("cert -force: %v", err)
			}
			if _, err := tls.LoadX509KeyPair(files["cert"], files["key"]); err != nil {
				t.Errorf("pair after -force: %v", err)
			}
			fi, err := os.Stat(files["key"])
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("key file mode after -force %v, want 0600", perm)
			}
		})
	}
}

// TestCertFlagErrors checks that bad flags are refused before anything is
// written, with the flag named.
func TestCertFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string // after -cert dir/c.pem -key dir/c.key, unless noFiles
		want string
	}{
		{"no names", nil, "missing -names"},
		{"empty names", []string{"-names", " , "}, `-names " , ": no name`},
		{"days 0", []string{"-names", "localhost", "-days", "0"}, "-days 0: expected 1 to 3650"},
		{"days too many", []string{"-names", "localhost", "-days", "3651"}, "-days 3651: expected 1 to 3650"},
		{"extra argument", []string{"-names", "localhost", "extra"}, `unexpected argument "extra"`},
		{"bad flag", []string{"-name", "localhost"}, "-name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"-cert", filepath.Join(dir, "c.pem"), "-key", filepath.Join(dir, "c.key")}, tc.args...)
			var stdout, stderr bytes.Buffer
			err := runCert(args, &stdout, &stderr, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("cert %q = %v, want an error containing %q", tc.args, err, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("refused run wrote %v", entries)
			}
		})
	}

	var stdout, stderr bytes.Buffer
	err := runCert([]string{"-names", "localhost"}, &stdout, &stderr, time.Now())
	if err == nil || !strings.Contains(err.Error(), "missing -cert, -key") {
		t.Errorf("cert without files = %v, want it to name -cert and -key", err)
	}
	same := filepath.Join(t.TempDir(), "both.pem")
	err = runCert([]string{"-names", "localhost", "-cert", same, "-key", same}, &stdout, &stderr, time.Now())
	if err == nil || !strings.Contains(err.Error(), "must be two files") {
		t.Errorf("cert with -cert = -key = %v, want a refusal", err)
	}
}

// TestTicketKey: "sluice ticket-key" prints a line a key file takes, a
// new one each time, and refuses arguments.
func TestTicketKey(t *testing.T) {
	var out, errOut bytes.Buffer
	for range 2 {
		if err := run([]string{"ticket-key"}, &out, &errOut, nil); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := tlsterm.ParseTicketKeys("printed", out.Bytes())
	if err != nil || len(keys) != 2 {
		t.Fatalf("ParseTicketKeys(%q) = %d keys, %v; want 2 different keys", out.String(), len(keys), err)
	}
	if err := run([]string{"ticket-key", "-n", "3"}, &out, &errOut, nil); err == nil || !strings.Contains(err.Error(), "takes no arguments") {
		t.Fatalf("ticket-key -n 3: %v, want a refusal", err)
	}
}
