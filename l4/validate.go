package l4

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"sluice/tlsterm"
)

// FieldError is a configuration problem at one key. Path names the key as
// "listener[0].tls.min_version", so callers can point at the file and line.
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// errs collects FieldErrors.
type errs []error

func (es *errs) add(path, format string, args ...any) {
	*es = append(*es, &FieldError{Path: path, Err: fmt.Errorf(format, args...)})
}

func (es *errs) wrap(path string, err error) {
	if err != nil {
		*es = append(*es, &FieldError{Path: path, Err: err})
	}
}

// wrapCertErrors adds err from a listener's tlsterm.Store, naming the key
// at fault under tlsPath: certificates[i] for a *tlsterm.CertError,
// client_ca for a *tlsterm.CAError.
func (es *errs) wrapCertErrors(tlsPath string, err error) {
	if err == nil {
		return
	}
	var joined interface{ Unwrap() []error }
	list := []error{err}
	if errors.As(err, &joined) {
		list = joined.Unwrap()
	}
	for _, e := range list {
		var ce *tlsterm.CertError
		var cae *tlsterm.CAError
		switch {
		case errors.As(e, &ce):
			es.wrap(fmt.Sprintf("%s.certificates[%d]", tlsPath, ce.Index), ce.Err)
		case errors.As(e, &cae):
			es.wrap(tlsPath+".client_ca", cae.Err)
		default:
			es.wrap(tlsPath+".certificates", e)
		}
	}
}

// Validate checks the configuration without touching the file system or
// the network: required keys, known values, addresses, and references
// between sections. It reports every problem it finds, each as a
// *FieldError, joined with errors.Join.
func (c *Config) Validate() error {
	var es errs
	switch c.Log.Format {
	case "", "text", "json":
	default:
		es.add("log.format", "unknown format %q: expected \"text\" or \"json\"", c.Log.Format)
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		es.add("log.level", "unknown level %q: expected \"debug\", \"info\", \"warn\" or \"error\"", c.Log.Level)
	}
	if c.MaxHandshakes < 0 {
		es.add("max_handshakes", "must not be negative (0 means no limit)")
	}
	if c.HandshakeQueueTimeout.Duration > 0 && c.MaxHandshakes == 0 {
		es.add("handshake_queue_timeout", "set without max_handshakes: it would have no effect")
	}

	if c.GCPercent != nil && (*c.GCPercent < 10 || *c.GCPercent > 1000) {
		es.add("gc_percent", "%d is out of range: expected 10 to 1000 (Go's default is 100)", *c.GCPercent)
	}
	if d := c.WatchInterval.Duration; d != 0 {
		if c.WatchFiles != nil && !*c.WatchFiles {
			es.add("watch_interval", "set with watch_files = false: it would have no effect")
		} else if d < 100*time.Millisecond || d > time.Hour {
			es.add("watch_interval", "%s is out of range: expected from \"100ms\" to \"1h\"; unset: %s", d, DefaultWatchInterval)
		}
	}

	upstreams := make(map[string]bool)
	first := make(map[string]string) // upstream name → path of its first definition
	for i, u := range c.Upstreams {
		p := fmt.Sprintf("upstream[%d]", i)
		switch {
		case u.Name == "":
			es.add(p+".name", "missing: every upstream needs a name")
		case upstreams[u.Name]:
			es.add(p+".name", "duplicate upstream name %q: %s has it already; names must be unique", u.Name, first[u.Name])
		default:
			first[u.Name] = p
		}
		upstreams[u.Name] = true
		u.validate(p, &es)
	}
	if len(c.Listeners) == 0 {
		es.add("listener", "missing: at least one [[listener]] is needed")
	}
	// What routes need to know of their upstreams, for checkALPN.
	ups := make(map[string]*Upstream, len(c.Upstreams))
	for _, u := range c.Upstreams {
		ups[u.Name] = &Upstream{Name: u.Name, Protocols: u.Protocols}
	}
	names := make(map[string]bool)
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listener[%d]", i)
		if l.Name != "" && names[l.Name] {
			es.add(p+".name", "duplicate listener name %q", l.Name)
		}
		names[l.Name] = true
		l.validate(p, upstreams, &es)
		checkALPN(p, &l, l.routes(l.displayName(), ups), &es)
	}
	if c.SessionTicketKeys != "" && !slices.ContainsFunc(c.Listeners, func(l ListenerConfig) bool {
		return l.TLS != nil && c.TicketKeysFile(l.TLS) == c.SessionTicketKeys
	}) {
		es.add("session_ticket_keys", "no listener uses it: each TLS listener has session_tickets = false or a session_ticket_keys of its own, or there is none")
	}
	checkBindConflicts(c.Listeners, &es)
	return errors.Join(es...)
}

func (u *UpstreamConfig) validate(p string, es *errs) {
	if len(u.Servers) == 0 {
		es.add(p+".servers", "missing: list at least one server (\"host:port\" or \"unix:/path\")")
	}
	for j, s := range u.Servers {
		if err := checkServerAddr(s); err != nil {
			es.wrap(fmt.Sprintf("%s.servers[%d]", p, j), err)
		}
	}
	switch u.Balance {
	case "", "round_robin", "least_conn":
	default:
		es.add(p+".balance", "unknown balance %q: expected \"round_robin\" or \"least_conn\"", u.Balance)
	}
	switch u.SendProxy {
	case "", "v1", "v2":
	default:
		es.add(p+".send_proxy", "unknown PROXY protocol version %q: expected \"\", \"v1\" or \"v2\"", u.SendProxy)
	}
	for j, s := range u.Protocols {
		if len(s) == 0 || len(s) > 255 {
			es.add(fmt.Sprintf("%s.protocols[%d]", p, j), "protocol names must be 1 to 255 bytes")
		}
	}
	if u.MaxFails != nil && *u.MaxFails < 0 {
		es.add(p+".max_fails", "must not be negative (0 disables passive health checks)")
	}
	u.SocketConfig.validate(p, es)
}

// validate checks the socket option keys of the listener or upstream at
// path p.
func (sc SocketConfig) validate(p string, es *errs) {
	off := sc.KeepAlive != nil && sc.KeepAlive.Duration == 0
	if sc.KeepAlive != nil && !off && (sc.KeepAlive.Duration < time.Second || sc.KeepAlive.Duration > maxKeepAlive) {
		es.add(p+".keepalive", "%s is out of range: expected from \"1s\" to \"%s\" (the kernel's limit), or \"0s\" to turn keepalive off",
			sc.KeepAlive.Duration, maxKeepAlive)
	}
	if d := sc.KeepAliveInterval.Duration; d != 0 && (d < time.Second || d > maxKeepAlive) {
		es.add(p+".keepalive_interval", "%s is out of range: expected from \"1s\" to \"%s\" (the kernel's limit); unset: %s", d, maxKeepAlive, DefaultKeepAliveInterval)
	}
	if n := sc.KeepAliveCount; n != 0 && (n < 1 || n > maxKeepAliveCount) {
		es.add(p+".keepalive_count", "%d is out of range: expected from 1 to %d (the kernel's limit); unset: %d", n, maxKeepAliveCount, DefaultKeepAliveCount)
	}
	if off && (sc.KeepAliveInterval.Duration != 0 || sc.KeepAliveCount != 0) {
		es.add(p+".keepalive", "\"0s\" turns keepalive off, so keepalive_interval and keepalive_count would have no effect: remove them, or set keepalive to the idle time before the first probe")
	}
	for _, b := range []struct {
		key string
		n   Size
	}{{"rcvbuf", sc.RcvBuf}, {"sndbuf", sc.SndBuf}} {
		if b.n != 0 && (b.n < MinBufferSize || b.n > MaxBufferSize) {
			es.add(p+"."+b.key, "%d bytes is out of range: expected a size from \"1k\" to \"64m\", such as 65536, \"64k\" or \"1m\" (unset: the kernel default)", b.n)
		}
	}
}

func (l *ListenerConfig) validate(p string, upstreams map[string]bool, es *errs) {
	if err := checkListenAddr(l.Address); err != nil {
		es.wrap(p+".address", err)
	}
	if l.MaxConnections < 0 {
		es.add(p+".max_connections", "must not be negative (0 means no limit)")
	}
	if l.MaxConnectionsPerIP < 0 {
		es.add(p+".max_connections_per_ip", "must not be negative (0 means no limit)")
	}
	if l.RatePerIP < 0 || math.IsNaN(l.RatePerIP) || math.IsInf(l.RatePerIP, 0) {
		es.add(p+".rate_per_ip", "must be a number of new connections per second, 0 or more (0 means no limit)")
	}
	switch {
	case l.RateBurst < 0:
		es.add(p+".rate_burst", "must not be negative")
	case l.RateBurst > 0 && l.RatePerIP == 0:
		es.add(p+".rate_burst", "set without rate_per_ip: it would have no effect")
	}
	if l.IPv6Prefix != 0 && (l.IPv6Prefix < 1 || l.IPv6Prefix > 128) {
		es.add(p+".ipv6_prefix", "must be from 1 to 128 (default 64)")
	}
	l.SocketConfig.validate(p, es)
	if l.AcceptProxy && len(l.TrustedProxies) == 0 && !strings.HasPrefix(l.Address, "unix:") {
		es.add(p+".trusted_proxies", "missing: accept_proxy needs the CIDRs of the load balancers allowed to send PROXY headers")
	}
	if !l.AcceptProxy && len(l.TrustedProxies) > 0 {
		es.add(p+".trusted_proxies", "set without accept_proxy = true: it would have no effect")
	}
	for j, t := range l.TrustedProxies {
		if _, err := parsePrefix(t); err != nil {
			es.wrap(fmt.Sprintf("%s.trusted_proxies[%d]", p, j), err)
		}
	}
	var alpn []string
	if l.TLS != nil {
		l.TLS.validate(p+".tls", es)
		alpn = l.TLS.ALPN
	}
	if len(l.Routes) == 0 {
		es.add(p+".route", "missing: at least one [[listener.route]] is needed")
	}
	for j, r := range l.Routes {
		rp := fmt.Sprintf("%s.route[%d]", p, j)
		switch {
		case r.Upstream == "":
			es.add(rp+".upstream", "missing: name the [[upstream]] this route sends to")
		case !upstreams[r.Upstream]:
			es.add(rp+".upstream", "no [[upstream]] is named %q: %s", r.Upstream, upstreamNames(upstreams))
		}
		pass := r.Mode == "passthrough"
		switch r.Mode {
		case "", "passthrough":
		case "terminate":
			if l.TLS == nil {
				es.add(rp+".mode", "\"terminate\" needs TLS: listener has no [listener.tls] table")
			}
		default:
			es.add(rp+".mode", "want \"terminate\" or \"passthrough\", got %q", r.Mode)
		}
		if pass {
			if r.WebSocket != nil {
				es.add(rp+".websocket", "a passthrough route sees only the ClientHello: match on sni and alpn")
			}
			if len(r.ClientCN) > 0 {
				es.add(rp+".client_cn", "a passthrough route sees only the ClientHello: match on sni and alpn")
			}
		}
		if l.TLS == nil && !pass {
			for _, m := range []struct {
				key string
				set bool
			}{{"sni", len(r.SNI) > 0}, {"alpn", len(r.ALPN) > 0}, {"client_cn", len(r.ClientCN) > 0}} {
				if m.set {
					es.add(rp+"."+m.key, "needs TLS: listener has no [listener.tls] table (or set mode = \"passthrough\")")
				}
			}
		}
		for k, s := range r.SNI {
			if err := checkSNIPattern(s); err != nil {
				es.wrap(fmt.Sprintf("%s.sni[%d]", rp, k), err)
			}
		}
		for k, a := range r.ALPN {
			if l.TLS != nil && !pass && !slices.Contains(alpn, a) {
				es.add(fmt.Sprintf("%s.alpn[%d]", rp, k), "%q is not offered by the listener (tls.alpn = %q), so this route could never match", a, alpn)
			}
		}
		if len(r.ClientCN) > 0 && l.TLS != nil && (l.TLS.ClientAuth == "" || l.TLS.ClientAuth == "none") {
			es.add(rp+".client_cn", "needs client certificates: set tls.client_auth to \"request\" or \"require\"")
		}
	}
}

func (t *TLSConfig) validate(p string, es *errs) {
	for j, c := range t.Certificates {
		cp := fmt.Sprintf("%s.certificates[%d]", p, j)
		if c.Cert == "" {
			es.add(cp+".cert", "missing: path to the PEM certificate chain")
		}
		if c.Key == "" {
			es.add(cp+".key", "missing: path to the PEM private key")
		}
	}
	if t.MinVersion != "" {
		if _, err := tlsterm.ParseVersion(t.MinVersion); err != nil {
			es.wrap(p+".min_version", err)
		}
	}
	for j, s := range t.CipherSuites {
		if _, err := tlsterm.ParseCipherSuite(s); err != nil {
			if knownCipherSuite(s) {
				// Refused by name: say which suites are accepted.
				err = fmt.Errorf("%w; expected one of %s", err, strings.Join(allowedCipherSuites(), ", "))
			}
			es.wrap(fmt.Sprintf("%s.cipher_suites[%d]", p, j), err)
		}
	}
	for j, s := range t.Curves {
		if _, err := tlsterm.ParseCurve(s); err != nil {
			es.wrap(fmt.Sprintf("%s.curves[%d]", p, j), err)
		}
	}
	for j, s := range t.ALPN {
		if s == "" || len(s) > 255 {
			es.add(fmt.Sprintf("%s.alpn[%d]", p, j), "protocol names must be 1 to 255 bytes")
		}
	}
	if d := t.SessionTicketLifetime.Duration; d != 0 && (d < time.Second || d > tlsterm.MaxSessionTicketLifetime) {
		es.add(p+".session_ticket_lifetime", "%s is out of range: expected from \"1s\" to \"%.0fh\" (crypto/tls keeps no ticket longer); unset: %s",
			d, tlsterm.MaxSessionTicketLifetime.Hours(), DefaultSessionTicketLifetime)
	}
	if t.SessionTicketLifetime.Duration != 0 && t.SessionTickets != nil && !*t.SessionTickets {
		es.add(p+".session_ticket_lifetime", "set with session_tickets = false: it would have no effect")
	}
	if t.SessionTicketKeys != "" && t.SessionTickets != nil && !*t.SessionTickets {
		es.add(p+".session_ticket_keys", "set with session_tickets = false: it would have no effect")
	}
	switch t.KTLS {
	case "", KTLSAuto, KTLSOff, KTLSRequire:
	default:
		es.add(p+".ktls", "%q: expected %q (the default), %q or %q", t.KTLS, KTLSAuto, KTLSOff, KTLSRequire)
	}
	ca, err := tlsterm.ParseClientAuth(t.ClientAuth)
	es.wrap(p+".client_auth", err)
	if err != nil {
		return // an unknown client_auth says nothing about client_ca
	}
	auth := ca != tls.NoClientCert
	if auth && t.ClientCA == "" {
		es.add(p+".client_ca", "missing: client_auth = %q needs the CA file client certificates are verified against", t.ClientAuth)
	}
	if !auth && t.ClientCA != "" {
		es.add(p+".client_auth", "client_ca is set but client_auth is \"none\": set \"request\" or \"require\"")
	}
}

// upstreamNames describes the defined upstream names, for an error about
// a route naming another one.
func upstreamNames(upstreams map[string]bool) string {
	var names []string
	for n := range upstreams {
		if n != "" {
			names = append(names, strconv.Quote(n))
		}
	}
	if len(names) == 0 {
		return "no upstream is defined"
	}
	slices.Sort(names)
	return "expected one of " + strings.Join(names, ", ")
}

// knownCipherSuite reports whether s is the name of a cipher suite Go
// knows, so that ParseCipherSuite refused it as too weak rather than as
// unknown.
func knownCipherSuite(s string) bool {
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if cs.Name == s && slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			return true
		}
	}
	return false
}

// allowedCipherSuites lists the TLS 1.2 suites cipher_suites accepts.
func allowedCipherSuites() []string {
	names := make([]string, len(tlsterm.DefaultCipherSuites))
	for i, id := range tlsterm.DefaultCipherSuites {
		names[i] = tls.CipherSuiteName(id)
	}
	return names
}

// checkListenAddr accepts "host:port" with a literal or empty host, and
// "unix:/path".
func checkListenAddr(a string) error {
	if a == "" {
		return errors.New("missing: expected \"host:port\" or \"unix:/path\"")
	}
	if path, ok := strings.CutPrefix(a, "unix:"); ok {
		if path == "" {
			return fmt.Errorf("invalid address %q: unix socket path is empty: expected \"unix:/path\"", a)
		}
		if err := checkUnixPath(path); err != nil {
			return fmt.Errorf("invalid address %q: %w", a, err)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("invalid address %q: expected \"host:port\", \"[::]:port\" or \"unix:/path\"", a)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
			return fmt.Errorf("invalid address %q: listen host must be an IP address", a)
		}
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("invalid port in %q: expected a number from 0 to 65535 or a service name", a)
	}
	return nil
}

// checkServerAddr accepts "host:port" (names are resolved at dial time) and
// "unix:/path".
func checkServerAddr(a string) error {
	if path, ok := strings.CutPrefix(a, "unix:"); ok {
		if path == "" {
			return fmt.Errorf("invalid server address %q: unix socket path is empty: expected \"unix:/path\"", a)
		}
		if err := checkUnixPath(path); err != nil {
			return fmt.Errorf("invalid server address %q: %w", a, err)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return fmt.Errorf("invalid server address %q: expected \"host:port\", \"[v6]:port\" or \"unix:/path\"", a)
	}
	// Port 0 (also an empty port) cannot be dialled.
	if n, err := net.LookupPort("tcp", port); err != nil || n == 0 {
		return fmt.Errorf("invalid port in %q: expected a number from 1 to 65535 or a service name", a)
	}
	return nil
}

// checkUnixPath checks that a unix socket path fits in a socket address,
// whose sun_path holds the path and its terminating NUL; a Linux abstract
// name ("@name") needs no NUL. Otherwise bind and connect fail with a bare
// "invalid argument", at start or at the first dial.
func checkUnixPath(path string) error {
	limit := len(unix.RawSockaddrUnix{}.Path)
	if !strings.HasPrefix(path, "@") {
		limit-- // the NUL
	}
	if len(path) > limit {
		return fmt.Errorf("socket path is %d bytes, longer than the %d a unix socket address holds: use a shorter path (through a symbolic link to the directory, say)", len(path), limit)
	}
	return nil
}

// checkSNIPattern accepts a DNS name or "*.name".
func checkSNIPattern(s string) error {
	name := strings.TrimPrefix(s, "*.")
	if name == "" || strings.ContainsAny(name, "* /:") || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") {
		return fmt.Errorf("invalid server name %q: expected a DNS name such as \"app.example.com\" or \"*.example.com\"", s)
	}
	return nil
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: expected \"10.0.0.0/8\", \"2001:db8::/32\" or an address", s)
}
