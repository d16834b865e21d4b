package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/l4"
)

// writeTestCert writes a self-signed pair for names, valid for days from
// now, as "sluice cert" does, and returns its files.
func writeTestCert(t *testing.T, dir, name string, names []string, now time.Time, days int) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, _, err := selfSignedPEM(names, now, days)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	writeFile(t, certFile, string(certPEM))
	writeFile(t, keyFile, string(keyPEM))
	return certFile, keyFile
}

// TestDescribe checks the whole -v description of a configuration with
// every kind of listener and route: certificates with the names and expiry
// read from their files, routes in order with only the matchers they set,
// the defaults of unset keys.
func TestDescribe(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().Truncate(time.Second)
	certA, keyA := writeTestCert(t, dir, "a", []string{"app.example.com", "*.example.com", "192.0.2.1"}, now, 10)
	certB, keyB := writeTestCert(t, dir, "b", []string{"api.example.net"}, now, 400)
	file := filepath.Join(dir, "sluice.toml")
	writeFile(t, file, `
[[listener]]
name = "public"
address = "0.0.0.0:443"
accept_proxy = true
trusted_proxies = ["10.0.0.0/8", "::1"]
[listener.tls]
certificates = [{ cert = "`+certA+`", key = "`+keyA+`" }, { cert = "`+certB+`", key = "`+keyB+`" }]
alpn = ["h2", "http/1.1"]
client_auth = "request"
client_ca = "`+certA+`"
[[listener.route]]
name = "sockets"
sni = ["app.example.com"]
websocket = true
idle_timeout = "1h"
upstream = "ws"
[[listener.route]]
alpn = ["h2"]
client_cn = ["alice", "bob smith"]
upstream = "app"
[[listener.route]]
websocket = false
upstream = "app"
[[listener.route]]
upstream = "app"

[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
[[listener.route]]
upstream = "app"

[[listener]]
name = "edge"
address = "unix:/run/sluice.sock"
[[listener.route]]
sni = ["db.example.com"]
mode = "passthrough"
upstream = "ws"
[[listener.route]]
upstream = "app"

[[upstream]]
name = "ws"
servers = ["10.0.0.21:9000", "unix:/run/ws.sock"]
balance = "least_conn"
send_proxy = "v2"
protocols = ["http/1.1"]
[[upstream]]
name = "app"
servers = ["[2001:db8::10]:8080"]
`)
	// Only decoded: describe prints what it is given, whatever the
	// validation of the day thinks of it.
	cfg, _, err := loadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := describe(&out, cfg, now); err != nil {
		t.Fatal(err)
	}
	rfc := func(days int) string { return now.Add(time.Duration(days) * 24 * time.Hour).UTC().Format(time.RFC3339) }
	want := `listener name=public address=0.0.0.0:443 tls=yes alpn=h2,http/1.1 client_auth=request client_ca=` + certA + ` accept_proxy=yes trusted_proxies=10.0.0.0/8,::1
  certificate cert=` + certA + ` names=app.example.com,*.example.com,192.0.2.1 not_after=` + rfc(10) + ` days_left=10
  certificate cert=` + certB + ` names=api.example.net not_after=` + rfc(400) + ` days_left=400
  route 1 name=sockets sni=app.example.com websocket=true mode=terminate idle_timeout=1h0m0s upstream=ws
  route 2 name=public#1 alpn=h2 client_cn="alice,bob smith" mode=terminate upstream=app
  route 3 name=public#2 websocket=false mode=terminate upstream=app
  route 4 name=public#3 match=any mode=terminate upstream=app
listener name=127.0.0.1:8443 address=127.0.0.1:8443 tls=yes alpn=none client_auth=none
  certificate none configured: sluice makes an in-memory self-signed one at each start, which clients do not trust
  route 1 name=127.0.0.1:8443#0 match=any mode=terminate upstream=app
listener name=edge address=unix:/run/sluice.sock tls=no
  route 1 name=edge#0 sni=db.example.com mode=passthrough upstream=ws
  route 2 name=edge#1 match=any mode=plain upstream=app
upstream name=ws balance=least_conn send_proxy=v2 protocols=http/1.1 servers=10.0.0.21:9000,unix:/run/ws.sock
upstream name=app balance=round_robin send_proxy=none protocols=none servers=[2001:db8::10]:8080
`
	if got := out.String(); got != want {
		t.Errorf("describe:\n%s\nwant:\n%s", got, want)
	}
}

// TestRunCheckVerbose checks "sluice -check -v" end to end: the
// description, then the verdict; and a certificate that cannot be read is
// an error at its line, not a line of the description.
func TestRunCheckVerbose(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	certFile, keyFile := writeTestCert(t, dir, "app", []string{"localhost", "127.0.0.1"}, now, 30)
	config := `[[listener]]
name = "wss"
address = "127.0.0.1:8888"
[listener.tls]
certificates = [{ cert = "` + certFile + `", key = "` + keyFile + `" }]
[[listener.route]]
upstream = "app"
[[upstream]]
name = "app"
servers = ["127.0.0.1:9222"]
send_proxy = "v2"
`
	file := writeConfig(t, config)
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-check", "-v", "-config", file}, &stdout, &stderr, nil); err != nil {
		t.Fatalf("-check -v: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	want := []string{
		"listener name=wss address=127.0.0.1:8888 tls=yes ",
		"  certificate cert=" + certFile + " names=localhost,127.0.0.1 not_after=",
		"  route 1 name=wss#0 match=any mode=terminate upstream=app",
		"upstream name=app balance=round_robin send_proxy=v2 protocols=none servers=127.0.0.1:9222",
		"sluice: configuration file " + file + " is ok",
	}
	if len(lines) != len(want) {
		t.Fatalf("-check -v printed %d lines, want %d:\n%s", len(lines), len(want), stdout.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want it to start with %q", i+1, lines[i], w)
		}
	}

	// Without -v, only the verdict.
	stdout.Reset()
	if err := run([]string{"-check", "-config", file}, &stdout, &stderr, nil); err != nil {
		t.Fatal(err)
	}
	if got := stdout.String(); got != "sluice: configuration file "+file+" is ok\n" {
		t.Errorf("-check without -v printed %q", got)
	}
}

// TestDescribeUnreadableCertificate checks that describe reports a
// certificate it cannot load with the key it comes from.
func TestDescribeUnreadableCertificate(t *testing.T) {
	dir := t.TempDir()
	cfg := &l4.Config{Listeners: []l4.ListenerConfig{{
		Address: "127.0.0.1:8443",
		TLS:     &l4.TLSConfig{Certificates: []l4.CertConfig{{Cert: filepath.Join(dir, "none.pem"), Key: filepath.Join(dir, "none.key")}}},
	}}}
	err := describe(&bytes.Buffer{}, cfg, time.Now())
	var fe *l4.FieldError
	if !errors.As(err, &fe) || fe.Path != "listener[0].tls.certificates[0]" || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("describe = %v, want a not-exist error at listener[0].tls.certificates[0]", err)
	}
}

// TestDescribeAdmin: -check -v names the admin listener and what it serves.
func TestDescribeAdmin(t *testing.T) {
	for _, tc := range []struct {
		admin l4.AdminConfig
		want  string
	}{
		{l4.AdminConfig{}, ""},
		{l4.AdminConfig{Address: "127.0.0.1:9090"}, "admin address=127.0.0.1:9090 serves=/metrics,/healthz,/readyz\n"},
		{l4.AdminConfig{Address: "unix:/run/a.sock", PProf: true}, "admin address=unix:/run/a.sock serves=/metrics,/healthz,/readyz,/debug/pprof/\n"},
	} {
		var out bytes.Buffer
		if err := describe(&out, &l4.Config{Admin: tc.admin}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != tc.want {
			t.Errorf("describe with %+v = %q, want %q", tc.admin, got, tc.want)
		}
	}
}
