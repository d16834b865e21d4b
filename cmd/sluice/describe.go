package main

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"

	"sluice/l4"
	"sluice/tlsterm"
)

// describe writes what a checked configuration sets up, for "sluice -check
// -v", as haproxy -c -V and nginx -T let an operator see what was read
// rather than what was meant: each listener with its certificates (names
// and expiry, read from the files) and its routes in the order they are
// tried, then each upstream (its protocols bound what ALPN its routes may
// negotiate). Keys are the configuration's, unset ones with the value they
// default to, in key=value lines as the logs have them.
func describe(w io.Writer, cfg *l4.Config, now time.Time) error {
	for i, lc := range cfg.Listeners {
		name := lc.Name
		if name == "" {
			name = lc.Address // as l4 names it
		}
		line := []string{"listener", kv("name", name), kv("address", lc.Address)}
		if lc.TLS == nil {
			line = append(line, "tls=no")
		} else {
			line = append(line, "tls=yes", kv("alpn", list(lc.TLS.ALPN, "none")), kv("client_auth", or(lc.TLS.ClientAuth, "none")))
			if lc.TLS.ClientCA != "" {
				line = append(line, kv("client_ca", lc.TLS.ClientCA))
			}
		}
		if lc.AcceptProxy {
			line = append(line, "accept_proxy=yes", kv("trusted_proxies", list(lc.TrustedProxies, "")))
		}
		fmt.Fprintln(w, strings.Join(line, " "))

		if lc.TLS != nil {
			if len(lc.TLS.Certificates) == 0 {
				fmt.Fprintln(w, "  certificate none configured: sluice makes an in-memory self-signed one at each start, which clients do not trust")
			}
			for j, cc := range lc.TLS.Certificates {
				c, err := tlsterm.LoadCertificate(tlsterm.CertFile{Cert: cc.Cert, Key: cc.Key})
				if err != nil {
					return &l4.FieldError{Path: fmt.Sprintf("listener[%d].tls.certificates[%d]", i, j), Err: err}
				}
				fmt.Fprintln(w, "  certificate", strings.Join([]string{
					kv("cert", cc.Cert),
					kv("names", list(certNames(c.Leaf.DNSNames, c.Leaf.IPAddresses, c.Leaf.Subject.CommonName), "none")),
					kv("not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339)),
					kv("days_left", strconv.Itoa(int(c.Leaf.NotAfter.Sub(now).Hours()/24))),
				}, " "))
			}
			if file := cfg.TicketKeysFile(lc.TLS); file != "" {
				tk, err := tlsterm.LoadTicketKeys(file)
				if err != nil {
					return err // checked by l4.New before: not reached
				}
				ids := tk.IDs()
				fmt.Fprintln(w, "  session_ticket_keys", kv("file", file), kv("keys", strconv.Itoa(len(ids))), kv("encrypting", ids[0]))
			}
		}

		for j, rc := range lc.Routes {
			fmt.Fprintln(w, "  route", strconv.Itoa(j+1), describeRoute(rc, name, j, lc.TLS != nil))
		}
	}
	for _, uc := range cfg.Upstreams {
		fmt.Fprintln(w, strings.Join([]string{
			"upstream",
			kv("name", uc.Name),
			kv("balance", or(uc.Balance, "round_robin")),
			kv("send_proxy", or(uc.SendProxy, "none")),
			kv("protocols", list(uc.Protocols, "none")),
			kv("servers", list(uc.Servers, "none")),
		}, " "))
	}
	if a := cfg.Admin; a.Address != "" {
		paths := "/metrics,/healthz,/readyz"
		if a.PProf {
			paths += ",/debug/pprof/"
		}
		fmt.Fprintln(w, "admin", kv("address", a.Address), kv("serves", paths))
	}
	return nil
}

// describeRoute is a route's line after its number: its name, its matchers
// (only those set; "match=any" when none is), its mode and its upstream.
func describeRoute(rc l4.RouteConfig, listener string, j int, tls bool) string {
	name := rc.Name
	if name == "" {
		name = fmt.Sprintf("%s#%d", listener, j) // as l4 names it in the logs
	}
	line := []string{kv("name", name)}
	matchers := len(line)
	if len(rc.SNI) > 0 {
		line = append(line, kv("sni", list(rc.SNI, "")))
	}
	if len(rc.ALPN) > 0 {
		line = append(line, kv("alpn", list(rc.ALPN, "")))
	}
	if rc.WebSocket != nil {
		line = append(line, kv("websocket", strconv.FormatBool(*rc.WebSocket)))
	}
	if len(rc.ClientCN) > 0 {
		line = append(line, kv("client_cn", list(rc.ClientCN, "")))
	}
	if len(line) == matchers {
		line = append(line, "match=any")
	}
	// An unset mode terminates TLS where the listener has it and relays the
	// bytes as they come where it has not.
	mode := rc.Mode
	switch {
	case mode != "":
	case tls:
		mode = "terminate"
	default:
		mode = "plain"
	}
	line = append(line, kv("mode", mode))
	if rc.IdleTimeout.Duration != 0 {
		line = append(line, kv("idle_timeout", rc.IdleTimeout.String()))
	}
	return strings.Join(append(line, kv("upstream", rc.Upstream)), " ")
}

// certNames lists the names a certificate is valid for: its DNS and IP
// subject alternative names, or, when it has none, its common name (which
// clients other than old ones no longer accept).
func certNames(dns []string, ips []net.IP, cn string) []string {
	names := append([]string(nil), dns...)
	for _, ip := range ips {
		names = append(names, ip.String())
	}
	if len(names) == 0 && cn != "" {
		names = append(names, "CN:"+cn)
	}
	return names
}

// kv formats key=value, quoting a value that is empty or has spaces,
// quotes, '=' or unprintable runes in it, as log/slog's text handler does.
func kv(key, value string) string {
	if value == "" || strings.ContainsFunc(value, func(r rune) bool {
		return r == ' ' || r == '"' || r == '=' || r == '\\' || !unicode.IsPrint(r)
	}) {
		value = strconv.Quote(value)
	}
	return key + "=" + value
}

// list joins values with commas, or returns none for an empty list.
func list(values []string, none string) string {
	if len(values) == 0 {
		return none
	}
	return strings.Join(values, ",")
}

// or returns s, or def when s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
