package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"sluice/l4"
	"sluice/tlsterm"
)

// testCertPair writes a self-signed ECDSA certificate for localhost and its
// key to dir as name.pem and name.key.
func testCertPair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	return testCertPairValid(t, dir, name, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// testCertPairValid is testCertPair for a certificate valid from notBefore
// to notAfter.
func testCertPairValid(t *testing.T, dir, name string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	return testCertFor(t, dir, name, []string{"localhost"}, notBefore, notAfter)
}

// testCertFor is testCertPairValid for the DNS names dnsNames.
func testCertFor(t *testing.T, dir, name string, dnsNames []string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     dnsNames,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+".key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkConfig runs "sluice -check -config path" and returns its flattened
// error messages, its stdout and its error.
func checkConfig(t *testing.T, path string) ([]string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run([]string{"-check", "-config", path}, &stdout, &stderr, nil)
	var msgs []string
	if err != nil {
		for _, e := range flatten(err) {
			msgs = append(msgs, e.Error())
		}
	}
	return msgs, stdout.String(), err
}

// upstreamApp is a valid [[upstream]] the broken configurations below
// append after their listeners.
const upstreamApp = `
[[upstream]]
name = "app"
servers = ["127.0.0.1:9000"]
`

// TestCheckBrokenConfigs runs -check on broken files. Each want entry is a
// substring of one reported error, in order, with {{file}} standing for the
// configuration file and {{dir}} for its directory; every error names the
// file, the line of the key at fault (when it has one), the key, and what
// was expected.
func TestCheckBrokenConfigs(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string
	}{
		{
			name: "syntax error: unterminated string",
			doc: `[[listener]]
address = "127.0.0.1:8443"
name = "public
`,
			want: []string{`{{file}}:3: listener.name: strings cannot contain newlines`},
		},
		{
			name: "syntax error: unquoted string",
			doc: `drain_timeout = "10s"

[[listener]]
address = 127.0.0.1:8443
`,
			want: []string{`{{file}}:4: listener.address: Invalid float value: "127.0.0.1" (strings must be quoted, as in "127.0.0.1:8443")`},
		},
		{
			name: "syntax error: unquoted host name",
			doc: `[[upstream]]
name = "app"
servers = [localhost:9000]
`,
			want: []string{`{{file}}:3: upstream.servers: expected value but found "localhost" instead (strings must be quoted`},
		},
		{
			name: "syntax error: key defined twice",
			doc: `[[listener]]
address = "127.0.0.1:8443"
address = "127.0.0.1:8444"
`,
			want: []string{`{{file}}:3: listener.address: Key 'listener.address' has already been defined.`},
		},
		{
			name: "wrong type",
			doc: `[[listener]]
address = "127.0.0.1:8443"
max_connections = "10"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:3: listener.max_connections: wrong type: expected an integer, found a string`},
		},
		{
			name: "wrong type: duration as a number",
			doc: `[log]
level = "info"

drain_timeout = 10
`,
			// drain_timeout is in [log] here, so it is an unknown key.
			want: []string{`{{file}}:4: log.drain_timeout: unknown key (check its spelling and the table it is in): expected one of format, level`},
		},
		{
			name: "wrong type: duration as a number at top level",
			doc: `drain_timeout = 10
[[listener]]
`,
			want: []string{`{{file}}:1: drain_timeout: invalid duration "10": expected a string such as "10s", "1m30s" or "500ms"`},
		},
		{
			name: "per-client limits out of range",
			doc: `[[listener]]
address = "127.0.0.1:8443"
max_connections_per_ip = -1
rate_burst = 5
ipv6_prefix = 129
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{
				`{{file}}:3: listener[0].max_connections_per_ip: must not be negative (0 means no limit)`,
				`{{file}}:4: listener[0].rate_burst: set without rate_per_ip: it would have no effect`,
				`{{file}}:5: listener[0].ipv6_prefix: must be from 1 to 128 (default 64)`,
			},
		},
		{
			name: "admin address without a port",
			doc: `[admin]
address = "127.0.0.1"
[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:2: admin.address: "127.0.0.1": want "host:port" or "unix:/path": address 127.0.0.1: missing port in address`},
		},
		{
			name: "admin pprof without an address",
			doc: `[admin]
pprof = true
[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:2: admin.pprof: needs admin.address: pprof is served on the admin listener`},
		},
		{
			name: "unknown key at top level",
			doc: `drain_timout = "10s"
[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:1: drain_timout: unknown key: did you mean "drain_timeout"? (expected one of drain_timeout, grace, max_handshakes, handshake_queue_timeout, gc_percent, session_ticket_keys, watch_files, watch_interval, log, admin, listener, upstream)`},
		},
		{
			name: "unknown key in listener.tls",
			doc: `[[listener]]
address = "127.0.0.1:8443"

[listener.tls]
alpn = ["http/1.1"]
min_versoin = "1.3"

[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:6: listener.tls.min_versoin: unknown key: did you mean "min_version"? (expected one of certificates, min_version, cipher_suites, curves, alpn, client_ca, client_auth, session_tickets, session_ticket_lifetime, session_ticket_keys, ktls, dynamic_record_sizing)`},
		},
		{
			name: "unknown key in listener.route, twice",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
sni = ["a.example.com"]
upstream = "app"
[[listener.route]]
upstrem = "app"

[[listener]]
address = "127.0.0.1:8444"
[[listener.route]]
upstrem = "app"
` + upstreamApp,
			want: []string{
				`{{file}}:7: listener.route.upstrem: unknown key: did you mean "upstream"? (expected one of name, sni, alpn, websocket, client_cn, upstream, mode, idle_timeout, server_first)`,
				`{{file}}:12: listener.route.upstrem: unknown key: did you mean "upstream"?`,
			},
		},
		{
			name: "unknown table reported once",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tsl]
min_version = "1.3"
alpn = ["h2"]
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:3: listener.tsl: unknown key: did you mean "tls"?`},
		},
		{
			name: "unknown key with nothing close",
			doc: `[[upstream]]
name = "app"
servers = ["127.0.0.1:9000"]
weights = [1]
`,
			want: []string{`{{file}}:4: upstream.weights: unknown key (check its spelling and the table it is in): expected one of name, servers, balance, connect_timeout, send_proxy, protocols, max_fails, fail_timeout, nodelay, keepalive, keepalive_interval, keepalive_count, rcvbuf, sndbuf`},
		},
		{
			name: "misspelt socket option keys",
			doc: `[[listener]]
address = "127.0.0.1:8443"
rcvbuff = "64k"
keep_alive = "30s"
[[listener.route]]
upstream = "app"

[[upstream]]
name = "app"
servers = ["127.0.0.1:9000"]
no_delay = false
keepalive_cnt = 3
`,
			want: []string{
				`{{file}}:3: listener.rcvbuff: unknown key: did you mean "rcvbuf"? (expected one of name, address, reuse_port, accept_proxy, trusted_proxies, proxy_timeout, handshake_timeout, idle_timeout, half_close_timeout, max_connections, log_open, max_connections_per_ip, rate_per_ip, rate_burst, ipv6_prefix, max_connection_lifetime, nodelay, keepalive, keepalive_interval, keepalive_count, rcvbuf, sndbuf, deferred, tls, route)`,
				`{{file}}:4: listener.keep_alive: unknown key: did you mean "keepalive"?`,
				`{{file}}:11: upstream.no_delay: unknown key: did you mean "nodelay"?`,
				`{{file}}:12: upstream.keepalive_cnt: unknown key: did you mean "keepalive_count"?`,
			},
		},
		{
			name: "bad size",
			doc: `[[listener]]
address = "127.0.0.1:8443"
sndbuf = "64k"
rcvbuf = "12q"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:4: listener.rcvbuf: invalid size "12q": expected a byte count such as 65536, "64k" or "1m"`},
		},
		{
			name: "bad size in the second listener",
			doc: `[[listener]]
address = "127.0.0.1:8443"
rcvbuf = "64k"
[[listener.route]]
upstream = "app"

[[listener]]
address = "127.0.0.1:8444"
rcvbuf = "64 k"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:9: listener.rcvbuf: invalid size "64 k": expected a byte count such as 65536, "64k" or "1m"`},
		},
		{
			name: "size as a float",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
` + upstreamApp + `sndbuf = 1.5
`,
			want: []string{`{{file}}:9: upstream.sndbuf: invalid size 1.5: expected a byte count such as 65536, "64k" or "1m"`},
		},
		{
			name: "negative size",
			doc: `[[listener]]
address = "127.0.0.1:8443"
sndbuf = -65536
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:3: listener.sndbuf: invalid size -65536: must not be negative`},
		},
		{
			name: "sizes out of range",
			doc: `[[listener]]
address = "127.0.0.1:8443"
rcvbuf = 64
[[listener.route]]
upstream = "app"
` + upstreamApp + `sndbuf = "128m"
`,
			want: []string{
				`{{file}}:10: upstream[0].sndbuf: 134217728 bytes is out of range: expected a size from "1k" to "64m", such as 65536, "64k" or "1m" (unset: the kernel default)`,
				`{{file}}:3: listener[0].rcvbuf: 64 bytes is out of range: expected a size from "1k" to "64m"`,
			},
		},
		{
			name: "keepalive out of range",
			doc: `[[listener]]
address = "127.0.0.1:8443"
keepalive = "100ms"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:3: listener[0].keepalive: 100ms is out of range: expected from "1s" to "9h6m7s" (the kernel's limit), or "0s" to turn keepalive off`},
		},
		{
			name: "keepalive negative",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
` + upstreamApp + `keepalive = "-1s"
`,
			want: []string{`{{file}}:9: upstream.keepalive: invalid duration "-1s": must not be negative`},
		},
		{
			name: "nodelay as a string",
			doc: `[[listener]]
address = "127.0.0.1:8443"
nodelay = "on"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:3: listener.nodelay: wrong type: expected a boolean, found a string`},
		},
		{
			name: "deferred as a number",
			doc: `[[listener]]
address = "127.0.0.1:8443"
deferred = 1
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:3: listener.deferred: wrong type: expected a boolean, found an integer`},
		},
		{
			name: "bad duration",
			doc: `[[listener]]
address = "127.0.0.1:8443"
idle_timeout = "10 seconds"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:3: listener.idle_timeout: invalid duration "10 seconds": expected a string such as "10s", "1m30s" or "500ms"`},
		},
		{
			name: "negative duration",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"

[[upstream]]
name = "app"
servers = ["127.0.0.1:9000"]
connect_timeout = "-5s"
`,
			want: []string{`{{file}}:9: upstream.connect_timeout: invalid duration "-5s": must not be negative`},
		},
		{
			name: "missing listener",
			doc:  upstreamApp,
			want: []string{`{{file}}: listener: missing: at least one [[listener]] is needed`},
		},
		{
			name: "listener without routes",
			doc: `drain_timeout = "5s"

[[listener]]
address = "127.0.0.1:8443"
` + upstreamApp,
			want: []string{`{{file}}:3: listener[0].route: missing: at least one [[listener.route]] is needed`},
		},
		{
			name: "route naming an unknown upstream",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
sni = ["a.example.com"]
upstream = "ap"
` + upstreamApp,
			want: []string{
				`{{file}}:5: listener[0].route[0].upstream: no [[upstream]] is named "ap": expected one of "app"`,
				`{{file}}:4: listener[0].route[0].sni: needs TLS: listener has no [listener.tls] table (or set mode = "passthrough")`,
			},
		},
		{
			name: "duplicate upstream names",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
` + upstreamApp + `
[[upstream]]
name = "app"
servers = ["127.0.0.1:9001"]
`,
			want: []string{`{{file}}:11: upstream[1].name: duplicate upstream name "app": upstream[0] has it already; names must be unique`},
		},
		{
			name: "upstream without servers",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"

[[upstream]]
name = "app"
balance = "least_conn"
`,
			want: []string{`{{file}}:6: upstream[0].servers: missing: list at least one server ("host:port" or "unix:/path")`},
		},
		{
			name: "bad server addresses",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"

[[upstream]]
name = "app"
servers = [
  "127.0.0.1:9000",
  "10.0.0.2",
  "10.0.0.3:0",
  "unix:",
]
`,
			want: []string{
				`{{file}}:10: upstream[0].servers[1]: invalid server address "10.0.0.2": expected "host:port", "[v6]:port" or "unix:/path"`,
				`{{file}}:11: upstream[0].servers[2]: invalid port in "10.0.0.3:0": expected a number from 1 to 65535 or a service name`,
				`{{file}}:12: upstream[0].servers[3]: invalid server address "unix:": unix socket path is empty: expected "unix:/path"`,
			},
		},
		{
			name: "bad listen address",
			doc: `[[listener]]
address = "8443"
[[listener.route]]
upstream = "app"

[[listener]]
address = "example.com:8443"
[[listener.route]]
upstream = "app"

[[listener]]
address = "127.0.0.1:99999"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{
				`{{file}}:2: listener[0].address: invalid address "8443": expected "host:port", "[::]:port" or "unix:/path"`,
				`{{file}}:7: listener[1].address: invalid address "example.com:8443": listen host must be an IP address`,
				`{{file}}:12: listener[2].address: invalid port in "127.0.0.1:99999": expected a number from 0 to 65535 or a service name`,
			},
		},
		{
			name: "unix listen address with empty path",
			doc: `[[listener]]
name = "local"
address = "unix:"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:3: listener[0].address: invalid address "unix:": unix socket path is empty: expected "unix:/path"`},
		},
		{
			name: "unix socket paths too long",
			doc: `[[listener]]
address = "unix:/run/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock"
[[listener.route]]
upstream = "app"

[[upstream]]
name = "app"
servers = [
  "127.0.0.1:9000",
  "unix:/run/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock",
]
`,
			want: []string{
				`{{file}}:10: upstream[0].servers[1]: invalid server address "unix:/run/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock": socket path is 113 bytes, longer than the 107 a unix socket address holds: use a shorter path`,
				`{{file}}:2: listener[0].address: invalid address "unix:/run/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock": socket path is 113 bytes, longer than the 107 a unix socket address holds: use a shorter path`,
			},
		},
		{
			name: "listeners that cannot both bind",
			doc: `[[listener]]
address = "0.0.0.0:8443"
[[listener.route]]
upstream = "app"

[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"

[[listener]]
address = "[::1]:8444"
reuse_port = true
[[listener.route]]
upstream = "app"

[[listener]]
address = "[::]:8444"
[[listener.route]]
upstream = "app"

[[listener]]
address = "127.0.0.1:8445"
reuse_port = true
[[listener.route]]
upstream = "app"

[[listener]]
address = "0.0.0.0:8445"
reuse_port = true
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{
				`{{file}}:7: listener[1].address: "127.0.0.1:8443" cannot listen beside listener[0].address = "0.0.0.0:8443": the unspecified address takes port 8443 on every address, IPv4 and IPv6 (Go listens dual-stack): the second bind would fail with "address already in use" (set reuse_port = true on both to share the port)`,
				`{{file}}:18: listener[3].address: "[::]:8444" cannot listen beside listener[2].address = "[::1]:8444": the unspecified address takes port 8444`,
			},
		},
		{
			name: "session_ticket_lifetime out of range",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
session_ticket_lifetime = "200h"
[[listener.route]]
upstream = "app"

[[listener]]
address = "127.0.0.1:8444"
[listener.tls]
session_ticket_lifetime = "500ms"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{
				`{{file}}:4: listener[0].tls.session_ticket_lifetime: 200h0m0s is out of range: expected from "1s" to "168h" (crypto/tls keeps no ticket longer); unset: 1h0m0s`,
				`{{file}}:11: listener[1].tls.session_ticket_lifetime: 500ms is out of range: expected from "1s" to "168h"`,
			},
		},
		{
			name: "session_ticket_lifetime without session tickets",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
session_tickets = false
session_ticket_lifetime = "10m"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:5: listener[0].tls.session_ticket_lifetime: set with session_tickets = false: it would have no effect`},
		},
		{
			name: "session_ticket_keys without session tickets",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
session_tickets = false
session_ticket_keys = "/etc/sluice/ticket.keys"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:5: listener[0].tls.session_ticket_keys: set with session_tickets = false: it would have no effect`},
		},
		{
			name: "session_ticket_keys no listener uses",
			doc: `session_ticket_keys = "/etc/sluice/ticket.keys"
[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:1: session_ticket_keys: no listener uses it: each TLS listener has session_tickets = false or a session_ticket_keys of its own, or there is none`},
		},
		{
			name: "watch_interval out of range",
			doc: `watch_interval = "2h"
[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:1: watch_interval: 2h0m0s is out of range: expected from "100ms" to "1h"; unset: 5s`},
		},
		{
			name: "watch_interval with watching off",
			doc: `watch_files = false
watch_interval = "1s"
[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:2: watch_interval: set with watch_files = false: it would have no effect`},
		},
		{
			name: "missing listen address",
			doc: `[[listener]]
name = "public"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:1: listener[0].address: missing: expected "host:port" or "unix:/path"`},
		},
		{
			name: "unknown balance",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
` + upstreamApp + `balance = "random"
`,
			want: []string{`{{file}}:9: upstream[0].balance: unknown balance "random": expected "round_robin" or "least_conn"`},
		},
		{
			name: "bad send_proxy",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
` + upstreamApp + `send_proxy = "v3"
`,
			want: []string{`{{file}}:9: upstream[0].send_proxy: unknown PROXY protocol version "v3": expected "", "v1" or "v2"`},
		},
		{
			name: "accept_proxy without trusted_proxies",
			doc: `[[listener]]
address = "127.0.0.1:8443"
accept_proxy = true
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:1: listener[0].trusted_proxies: missing: accept_proxy needs the CIDRs of the load balancers allowed to send PROXY headers`},
		},
		{
			name: "bad CIDR",
			doc: `[[listener]]
address = "127.0.0.1:8443"
accept_proxy = true
trusted_proxies = ["10.0.0.0/8", "10.0.0.0/33"]
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:4: listener[0].trusted_proxies[1]: invalid CIDR "10.0.0.0/33": expected "10.0.0.0/8", "2001:db8::/32" or an address`},
		},
		{
			name: "trusted_proxies without accept_proxy",
			doc: `[[listener]]
address = "127.0.0.1:8443"
trusted_proxies = ["10.0.0.0/8"]
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:3: listener[0].trusted_proxies: set without accept_proxy = true: it would have no effect`},
		},
		{
			name: "passthrough route with matchers it cannot see",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"
mode = "passthrough"
websocket = true
client_cn = ["x"]
[[listener.route]]
upstream = "app"
mode = "bridge"
` + upstreamApp,
			want: []string{
				`{{file}}:6: listener[0].route[0].websocket: a passthrough route sees only the ClientHello: match on sni and alpn`,
				`{{file}}:7: listener[0].route[0].client_cn: a passthrough route sees only the ClientHello: match on sni and alpn`,
				`{{file}}:10: listener[0].route[1].mode: want "terminate" or "passthrough", got "bridge"`,
			},
		},
		{
			name: "gc_percent out of range",
			doc: `gc_percent = 5
[[listener]]
address = "127.0.0.1:8080"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:1: gc_percent: 5 is out of range: expected 10 to 1000 (Go's default is 100)`},
		},
		{
			name: "sni matcher on a plain listener",
			doc: `[[listener]]
address = "127.0.0.1:8080"
[[listener.route]]
upstream = "app"
sni = ["a.example.com"]
` + upstreamApp,
			want: []string{`{{file}}:5: listener[0].route[0].sni: needs TLS: listener has no [listener.tls] table (or set mode = "passthrough")`},
		},
		{
			name: "bad sni patterns",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
[[listener.route]]
sni = [
  "*.*.example.com",
  "a b",
]
upstream = "app"
` + upstreamApp,
			want: []string{
				`{{file}}:6: listener[0].route[0].sni[0]: invalid server name "*.*.example.com": expected a DNS name such as "app.example.com" or "*.example.com"`,
				`{{file}}:7: listener[0].route[0].sni[1]: invalid server name "a b": expected a DNS name`,
			},
		},
		{
			name: "route alpn not offered by the listener",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
alpn = ["http/1.1"]
[[listener.route]]
alpn = ["h2"]
upstream = "app"
` + upstreamApp + `protocols = ["h2"]
`,
			want: []string{
				`{{file}}:6: listener[0].route[0].alpn[0]: "h2" is not offered by the listener (tls.alpn = ["http/1.1"]), so this route could never match`,
				`{{file}}:4: listener[0].tls.alpn[0]: "http/1.1" is offered but could never be negotiated: no route accepts it (their alpn leaves it out); do not offer it`,
			},
		},
		{
			name: "client_auth require without client_ca",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
client_auth = "require"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:3: listener[0].tls.client_ca: missing: client_auth = "require" needs the CA file client certificates are verified against`},
		},
		{
			name: "client_ca without client_auth",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
client_ca = "/etc/sluice/clients.pem"
client_auth = "none"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:5: listener[0].tls.client_auth: client_ca is set but client_auth is "none": set "request" or "require"`},
		},
		{
			name: "unknown client_auth",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
client_auth = "optional"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{
				`{{file}}:4: listener[0].tls.client_auth: unknown client_auth "optional": expected "none", "request" or "require"`,
			},
		},
		{
			name: "unsupported min_version",
			doc: `[[listener]]
address = "127.0.0.1:8443"

[listener.tls]
alpn = ["h2", "http/1.1"]

min_version = "1.1"
[[listener.route]]
upstream = "app"
` + upstreamApp + `protocols = ["h2", "http/1.1"]
`,
			want: []string{`{{file}}:7: listener[0].tls.min_version: unsupported TLS version "1.1": expected "1.2" or "1.3"`},
		},
		{
			name: "unknown cipher suite",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
cipher_suites = ["ECDHE-RSA-AES128-GCM-SHA256", "AES-MEGA-9000"]
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:4: listener[0].tls.cipher_suites[1]: unknown cipher suite "AES-MEGA-9000": expected a name such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or ECDHE-RSA-AES128-GCM-SHA256`},
		},
		{
			name: "insecure cipher suites",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
cipher_suites = [
  "TLS_RSA_WITH_RC4_128_SHA",
  "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
  "TLS_AES_128_GCM_SHA256",
]
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{
				`{{file}}:5: listener[0].tls.cipher_suites[0]: cipher suite TLS_RSA_WITH_RC4_128_SHA is insecure: refused; expected one of TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, `,
				`{{file}}:6: listener[0].tls.cipher_suites[1]: cipher suite TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not ECDHE with AEAD: refused; expected one of TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, `,
				`{{file}}:7: listener[0].tls.cipher_suites[2]: cipher suite TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite: those are always on and not configurable`,
			},
		},
		{
			name: "unknown curve",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
curves = ["X25519", "P-192"]
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:4: listener[0].tls.curves[1]: unknown curve "P-192": expected one of X25519, P-256, P-384, P-521, X25519MLKEM768`},
		},
		{
			name: "certificate file missing",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
certificates = [
  { cert = "{{dir}}/a.pem", key = "{{dir}}/a.key" },
  { cert = "{{dir}}/missing.pem", key = "{{dir}}/a.key" },
]
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:6: listener[0].tls.certificates[1]: load certificate {{dir}}/missing.pem with key {{dir}}/a.key: stat {{dir}}/missing.pem: no such file or directory`},
		},
		{
			name: "certificate file missing, array of tables",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[[listener.tls.certificates]]
cert = "{{dir}}/missing.pem"
key = "{{dir}}/a.key"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:3: listener[0].tls.certificates[0]: load certificate {{dir}}/missing.pem with key {{dir}}/a.key: stat {{dir}}/missing.pem: no such file or directory`},
		},
		{
			name: "certificate and key do not match",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
certificates = [{ cert = "{{dir}}/a.pem", key = "{{dir}}/b.key" }]
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:4: listener[0].tls.certificates[0]: load certificate {{dir}}/a.pem with key {{dir}}/b.key: tls: private key does not match public key`},
		},
		{
			name: "expired certificate",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
certificates = [
  { cert = "{{dir}}/a.pem", key = "{{dir}}/a.key" },
  { cert = "{{dir}}/expired.pem", key = "{{dir}}/expired.key" },
]
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:6: listener[0].tls.certificates[1]: load certificate {{dir}}/expired.pem: certificate expired on 2026-01-02 (NotAfter)`},
		},
		{
			name: "encrypted key",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
certificates = [{ cert = "{{dir}}/a.pem", key = "{{dir}}/encrypted.key" }]
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:4: listener[0].tls.certificates[0]: load key {{dir}}/encrypted.key: it is encrypted with a passphrase, and sluice cannot read passphrases: ` +
				`decrypt it with "openssl pkey -in {{dir}}/encrypted.key -out {{dir}}/encrypted-plain.key" and set key to the decrypted file`},
		},
		{
			name: "client_ca without PEM",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
certificates = [{ cert = "{{dir}}/a.pem", key = "{{dir}}/a.key" }]
client_auth = "require"
client_ca = "{{dir}}/notpem.txt"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{`{{file}}:6: listener[0].tls.client_ca: read CA file {{dir}}/notpem.txt: no PEM certificate found`},
		},
		{
			name: "client_ca missing and key missing: all file errors",
			doc: `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
certificates = [{ cert = "{{dir}}/a.pem", key = "{{dir}}/none.key" }]
client_auth = "request"
client_ca = "{{dir}}/none.pem"
[[listener.route]]
upstream = "app"
` + upstreamApp,
			want: []string{
				`{{file}}:6: listener[0].tls.client_ca: read CA file: stat {{dir}}/none.pem: no such file or directory`,
				`{{file}}:4: listener[0].tls.certificates[0]: load certificate {{dir}}/a.pem with key {{dir}}/none.key: stat {{dir}}/none.key: no such file or directory`,
			},
		},
		{
			name: "several errors",
			doc: `[log]
level = "verbose"

[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
min_version = "1.0"
[[listener.route]]
upstream = "nope"

[[listener]]
address = "127.0.0.1:8444"

[[upstream]]
name = "app"
servers = []
send_proxy = "v9"
`,
			want: []string{
				`{{file}}:2: log.level: unknown level "verbose": expected "debug", "info", "warn" or "error"`,
				`{{file}}:16: upstream[0].servers: missing: list at least one server`,
				`{{file}}:17: upstream[0].send_proxy: unknown PROXY protocol version "v9"`,
				`{{file}}:7: listener[0].tls.min_version: unsupported TLS version "1.0": expected "1.2" or "1.3"`,
				`{{file}}:9: listener[0].route[0].upstream: no [[upstream]] is named "nope": expected one of "app"`,
				`{{file}}:11: listener[1].route: missing: at least one [[listener.route]] is needed`,
			},
		},
		{
			name: "several unknown keys",
			doc: `drain = "1s"
[[listener]]
adress = "127.0.0.1:8443"
[listener.tls]
alpn = ["h2"]
client-auth = "none"
`,
			want: []string{
				`{{file}}:1: drain: unknown key (check its spelling and the table it is in): expected one of drain_timeout, grace, max_handshakes, handshake_queue_timeout, gc_percent, session_ticket_keys, watch_files, watch_interval, log, admin, listener, upstream`,
				`{{file}}:3: listener.adress: unknown key: did you mean "address"?`,
				`{{file}}:6: listener.tls.client-auth: unknown key: did you mean "client_auth"?`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			testCertPair(t, dir, "a")
			testCertPair(t, dir, "b")
			// Expired on 2026-01-02 at noon UTC; Go's minimum version is
			// newer, so the date has passed wherever these tests run.
			expiry := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
			testCertPairValid(t, dir, "expired", expiry.AddDate(0, -3, 0), expiry)
			writeFile(t, filepath.Join(dir, "encrypted.key"), string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("ciphertext")})))
			writeFile(t, filepath.Join(dir, "notpem.txt"), "this is not a certificate\n")
			file := filepath.Join(dir, "bad.toml")
			r := strings.NewReplacer("{{file}}", file, "{{dir}}", dir)
			writeFile(t, file, r.Replace(tc.doc))

			msgs, stdout, err := checkConfig(t, file)
			if err == nil {
				t.Fatalf("-check accepted the configuration; stdout: %q", stdout)
			}
			if strings.Contains(stdout, "is ok") {
				t.Errorf("stdout = %q, want no \"is ok\"", stdout)
			}
			for i, m := range msgs {
				if !strings.HasPrefix(m, file+":") {
					t.Errorf("error %d = %q, does not start with the file name", i, m)
				}
			}
			if len(msgs) != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%s", len(msgs), len(tc.want), strings.Join(msgs, "\n"))
			}
			for i, w := range tc.want {
				w = r.Replace(w)
				if i >= len(msgs) {
					t.Errorf("missing error %d: %q", i, w)
				} else if !strings.Contains(msgs[i], w) {
					t.Errorf("error %d:\n got %q\nwant %q", i, msgs[i], w)
				}
			}
		})
	}
}

// TestCheckValidConfigWithCertificates checks a configuration with real
// certificate, key and CA files end to end.
func TestCheckValidConfigWithCertificates(t *testing.T) {
	dir := t.TempDir()
	certA, keyA := testCertPair(t, dir, "a")
	certB, keyB := testCertPair(t, dir, "b")
	file := filepath.Join(dir, "sluice.toml")
	writeFile(t, file, `drain_timeout = "5s"
[log]
format = "json"
level = "warn"

[[listener]]
name = "public"
address = "127.0.0.1:8443"
accept_proxy = true
trusted_proxies = ["10.0.0.0/8", "::1"]
nodelay = true
keepalive = "30s"
rcvbuf = "64k"
sndbuf = 131072
deferred = false

[listener.tls]
certificates = [
  { cert = "`+certA+`", key = "`+keyA+`" },
  { cert = "`+certB+`", key = "`+keyB+`" },
]
min_version = "1.2"
cipher_suites = ["ECDHE-ECDSA-AES128-GCM-SHA256"]
curves = ["X25519", "P-256"]
alpn = ["h2", "http/1.1"]
client_auth = "request"
client_ca = "`+certA+`"
session_ticket_lifetime = "30m"

[[listener.route]]
sni = ["*.example.com"]
alpn = ["h2"]
client_cn = ["client"]
upstream = "app"

[[listener.route]]
upstream = "app"

[[listener]]
address = "unix:`+filepath.Join(dir, "s.sock")+`"
[[listener.route]]
upstream = "app"

# Two sockets on one port, on purpose: reuse_port on both.
[[listener]]
address = "0.0.0.0:8080"
reuse_port = true
[[listener.route]]
upstream = "app"
[[listener]]
address = "127.0.0.1:8080"
reuse_port = true
[[listener.route]]
upstream = "app"

[[upstream]]
name = "app"
servers = ["127.0.0.1:9000", "localhost:https", "unix:/run/app.sock"]
protocols = ["h2", "http/1.1"]
balance = "least_conn"
send_proxy = "v2"
max_fails = 0
nodelay = false
keepalive = "0s"
rcvbuf = "1M"
sndbuf = "256k"
`)
	msgs, stdout, err := checkConfig(t, file)
	if err != nil {
		t.Fatalf("-check failed:\n%s", strings.Join(msgs, "\n"))
	}
	if want := "sluice: configuration file " + file + " is ok\n"; stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
}

// TestLoadConfigSocketOptions checks that each socket option key lands in
// its field, in both forms a size may take.
func TestLoadConfigSocketOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sluice.toml")
	writeFile(t, file, `[[listener]]
address = "127.0.0.1:8443"
nodelay = false
keepalive = "45s"
keepalive_interval = "5s"
keepalive_count = 3
rcvbuf = "64k"
sndbuf = 131072
deferred = true
[[listener.route]]
upstream = "app"

[[upstream]]
name = "app"
servers = ["127.0.0.1:9000"]
nodelay = true
keepalive = "0s"
rcvbuf = "2m"
sndbuf = "32K"
`)
	cfg, _, err := loadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	l, u := cfg.Listeners[0], cfg.Upstreams[0]
	if l.NoDelay == nil || *l.NoDelay || l.KeepAlive == nil || l.KeepAlive.Duration != 45*time.Second ||
		l.KeepAliveInterval.Duration != 5*time.Second || l.KeepAliveCount != 3 ||
		l.RcvBuf != 64<<10 || l.SndBuf != 131072 || l.Deferred == nil || !*l.Deferred {
		t.Errorf("listener: nodelay %v, keepalive %v every %v ×%d, rcvbuf %d, sndbuf %d, deferred %v",
			l.NoDelay, l.KeepAlive, l.KeepAliveInterval, l.KeepAliveCount, l.RcvBuf, l.SndBuf, l.Deferred)
	}
	if u.NoDelay == nil || !*u.NoDelay || u.KeepAlive == nil || u.KeepAlive.Duration != 0 ||
		u.RcvBuf != 2<<20 || u.SndBuf != 32<<10 {
		t.Errorf("upstream: nodelay %v, keepalive %v, rcvbuf %d, sndbuf %d", u.NoDelay, u.KeepAlive, u.RcvBuf, u.SndBuf)
	}
}

// TestLoadConfigRecordSizing: dynamic_record_sizing is read from
// [listener.tls], false when absent.
func TestLoadConfigRecordSizing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sluice.toml")
	writeFile(t, file, `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
dynamic_record_sizing = true
[[listener.route]]
upstream = "app"

[[listener]]
address = "127.0.0.1:8444"
[listener.tls]
[[listener.route]]
upstream = "app"

[[upstream]]
name = "app"
servers = ["127.0.0.1:9000"]
`)
	cfg, _, err := loadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Listeners[0].TLS.DynamicRecordSizing || cfg.Listeners[1].TLS.DynamicRecordSizing {
		t.Errorf("dynamic_record_sizing: %v and %v, want true and false",
			cfg.Listeners[0].TLS.DynamicRecordSizing, cfg.Listeners[1].TLS.DynamicRecordSizing)
	}
}

// TestShippedConfigs checks every configs/*.toml: strictly decoded, no
// unknown keys, and valid. Their certificate files do not exist here,
// except for sluice.toml, which uses an in-memory certificate and so must
// pass the whole -check.
func TestShippedConfigs(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no configs/*.toml found")
	}
	seen := false
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			var cfg l4.Config
			md, err := toml.DecodeFile(file, &cfg)
			if err != nil {
				t.Fatal(err)
			}
			if u := md.Undecoded(); len(u) > 0 {
				t.Errorf("unknown keys: %q", u)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate:\n%v", err)
			}
			// loadConfig is what sluice runs: it must agree.
			if _, _, err := loadConfig(file); err != nil {
				t.Errorf("loadConfig: %v", err)
			}
			if filepath.Base(file) == "sluice.toml" {
				seen = true
				msgs, stdout, err := checkConfig(t, file)
				if err != nil {
					t.Fatalf("-check failed:\n%s", strings.Join(msgs, "\n"))
				}
				if !strings.Contains(stdout, "configuration file "+file+" is ok") {
					t.Errorf("stdout = %q, want it to say the file is ok", stdout)
				}
			}
		})
	}
	if !seen {
		t.Error("configs/sluice.toml is missing")
	}
}

// TestLoadConfigNonParseErrors checks decodeError on the messages toml.Decode
// returns without a position type.
func TestLoadConfigNonParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`toml: line 3 (last key "listener.max_connections"): incompatible types: TOML value has type string; destination has type integer`,
			`f.toml:3: listener.max_connections: wrong type: expected an integer, found a string`},
		{`toml: line 1 (last key "listener"): incompatible types: TOML value has type int64; destination has type slice`,
			`f.toml:1: listener: wrong type: expected an array, found an integer`},
		{`toml: (last key "listener.\"a b\""): something else`,
			`f.toml: listener."a b": something else`},
		{`toml: cannot decode`, `f.toml: cannot decode`},
	} {
		if got := decodeError("f.toml", errString(tc.in)).Error(); got != tc.want {
			t.Errorf("decodeError(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// TestCheckKTLS: a bad ktls value names its line, and ktls = "require" is
// refused by -check on a kernel without TLS (this machine's), naming the
// key and the kernel's reason; elsewhere it passes.
func TestCheckKTLS(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		value, want string
	}{
		{"sometimes", `:4: listener[0].tls.ktls: "sometimes": expected "auto" (the default), "off" or "require"`},
		{"require", `:4: listener[0].tls.ktls: "require", and this kernel cannot: tlsterm: no kernel TLS`},
	} {
		file := filepath.Join(dir, tc.value+".toml")
		writeFile(t, file, `[[listener]]
address = "127.0.0.1:8443"
[listener.tls]
ktls = "`+tc.value+`"
[[listener.route]]
upstream = "app"
[[upstream]]
name = "app"
servers = ["127.0.0.1:9000"]
`)
		msgs, stdout, err := checkConfig(t, file)
		if tc.value == "require" && tlsterm.ProbeKernelTLS() == nil {
			if err != nil {
				t.Errorf("ktls = require on a kernel with TLS: %v %q", err, msgs)
			}
			continue
		}
		if err == nil || len(msgs) != 1 || !strings.HasPrefix(msgs[0], file+tc.want) {
			t.Errorf("ktls = %q: %v, stdout %q, errors:\n%s\nwant %s%s", tc.value, err, stdout, strings.Join(msgs, "\n"), file, tc.want)
		}
	}
}
