package l4

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// ALPN is decided per ClientHello: a listener offers only the protocols of
// its tls.alpn that the route the connection will take can carry, that is
// whose upstream lists them in protocols. nginx and HAProxy set ALPN per
// listening socket, so a site behind a protocol-blind route negotiates h2
// with every browser and its HTTP/1.1 backend receives "PRI * HTTP/2.0".

// alpnRefused is what a listener offers a client none of whose protocols
// can be carried: crypto/tls then fails the handshake with the
// no_application_protocol alert. It is a name no client offers, and not
// "h2", which crypto/tls would let an http/1.1-only client past without
// ALPN.
const alpnRefused = "sluice-none"

// errNoALPN is crypto/tls's error for that refusal, matched by its text
// (crypto/tls exports no sentinel); TestALPNRefusedReason keeps it true.
const errNoALPN = "unsupported application protocols"

// alpnFor returns the protocols to offer hello: those of s.ALPN, in its
// order, that carries accepts for hello's server name. A client that offers
// none gets none: it negotiates no protocol, as it asked.
func (s *Server) alpnFor(hello *tls.ClientHelloInfo) []string {
	if len(hello.SupportedProtos) == 0 || len(s.ALPN) == 0 {
		return nil
	}
	offer := make([]string, 0, len(s.ALPN))
	shared := false
	for _, p := range s.ALPN {
		if carries(s.Routes, hello.ServerName, p) {
			offer = append(offer, p)
			shared = shared || slices.Contains(hello.SupportedProtos, p)
		}
	}
	if !shared {
		return []string{alpnRefused}
	}
	return offer
}

// carries reports whether a terminated connection for server name sni
// that negotiates proto can take only routes whose upstream speaks proto,
// and can take one at all. The routes it can take are those whose sni and
// alpn accept it, in order, up to the first that nothing decided after the
// handshake (websocket, client_cn) can turn down.
func carries(routes []Route, sni, proto string) bool {
	reachable := false
	for i := range routes {
		r := &routes[i]
		if r.Passthrough || (len(r.SNI) > 0 && !matchSNI(r.SNI, sni)) || (len(r.ALPN) > 0 && !slices.Contains(r.ALPN, proto)) {
			continue
		}
		if r.Upstream == nil || !slices.Contains(r.Upstream.Protocols, proto) {
			return false
		}
		reachable = true
		if r.WebSocket == WebSocketAny && len(r.ClientCN) == 0 {
			return true
		}
	}
	return reachable
}

// checkALPN reports protocols a listener could never negotiate as
// configured: a route that matches alpn = P but sends to an upstream that
// does not speak P, and a tls.alpn entry that no server name can be
// offered because no route carries it. routes are the listener's.
func checkALPN(p string, l *ListenerConfig, routes []Route, es *errs) {
	if l.TLS == nil {
		return
	}
	for j, r := range routes {
		if r.Passthrough || r.Upstream == nil {
			continue
		}
		for k, a := range r.ALPN {
			if !slices.Contains(r.Upstream.Protocols, a) {
				es.add(fmt.Sprintf("%s.route[%d].alpn[%d]", p, j, k),
					"route %q matches %q, but its upstream %q does not speak it: add %q to the upstream's protocols, or drop it here",
					r.Name, a, r.Upstream.Name, a)
			}
		}
	}
	names := sampleNames(routes)
	for j, a := range l.TLS.ALPN {
		if slices.ContainsFunc(names, func(n string) bool { return carries(routes, n, a) }) {
			continue
		}
		if why := routesNotCarrying(routes, a); why != "" {
			es.add(fmt.Sprintf("%s.tls.alpn[%d]", p, j),
				"%q is offered but could never be negotiated: the routes a client could take with it send to upstreams that do not list it in protocols (%s); list it there, or do not offer it",
				a, why)
		} else {
			es.add(fmt.Sprintf("%s.tls.alpn[%d]", p, j),
				"%q is offered but could never be negotiated: no route accepts it (their alpn leaves it out); do not offer it", a)
		}
	}
}

// sampleNames returns a server name for each way the routes tell names
// apart: each exact name, one name under each wildcard, no name, and a
// name no route names.
func sampleNames(routes []Route) []string {
	names := []string{"", "unnamed.invalid"}
	for _, r := range routes {
		for _, s := range r.SNI {
			names = append(names, strings.Replace(s, "*", "sample", 1))
		}
	}
	return names
}

// routesNotCarrying names the routes that match proto but whose upstream
// does not speak it, for an error message.
func routesNotCarrying(routes []Route, proto string) string {
	var out []string
	for _, r := range routes {
		if !r.Passthrough && r.Upstream != nil && (len(r.ALPN) == 0 || slices.Contains(r.ALPN, proto)) &&
			!slices.Contains(r.Upstream.Protocols, proto) {
			out = append(out, fmt.Sprintf("route %q → upstream %q", r.Name, r.Upstream.Name))
		}
	}
	return strings.Join(out, ", ")
}
