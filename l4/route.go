package l4

import (
	"errors"
	"slices"
	"strings"
	"time"

	"sluice/tlsterm"
)

// ErrNoRoute is the error for a connection that matched no route.
var ErrNoRoute = errors.New("l4: no route")

// ErrClientSilent is the error for a connection whose client sent nothing
// within the handshake timeout while its route waited for a request head.
var ErrClientSilent = errors.New("l4: client sent nothing before the peek deadline")

// WebSocketMatch says how a route treats the WebSocket upgrade matcher.
type WebSocketMatch int

// The WebSocket matcher's settings.
const (
	WebSocketAny  WebSocketMatch = iota // not a matcher
	WebSocketOnly                       // only connections that start with a WebSocket upgrade
	WebSocketNot                        // only connections that do not
)

// Route sends matching connections to an upstream. Every matcher that is
// set must match; a Route with none matches everything. Routes are tried in
// order and the first match wins.
type Route struct {
	Name      string
	SNI       []string // lower-case names or "*.example.com"
	ALPN      []string
	WebSocket WebSocketMatch
	ClientCN  []string
	Upstream  *Upstream
	// Passthrough routes match on the ClientHello (SNI, and ALPN against
	// the protocols the client offers) and relay TLS without terminating
	// it.
	Passthrough bool
	// IdleTimeout overrides the server's idle timeout when non-zero.
	IdleTimeout time.Duration
	// ServerFirst says the route's protocol lets the server speak first
	// (SMTP, MySQL): a client that sent nothing when the WebSocket peek
	// ended is still relayed. Otherwise such a client is closed
	// (ErrClientSilent) and never costs a backend connection.
	ServerFirst bool
}

// matchInput is what routing may look at. websocket is called only when a
// route needs it, because finding out means peeking at the stream.
type matchInput struct {
	sni, alpn, clientCN string
	websocket           func() bool
}

func (r *Route) match(in *matchInput) bool {
	if len(r.SNI) > 0 && !matchSNI(r.SNI, in.sni) {
		return false
	}
	if len(r.ALPN) > 0 && !slices.Contains(r.ALPN, in.alpn) {
		return false
	}
	if len(r.ClientCN) > 0 && (in.clientCN == "" || !slices.Contains(r.ClientCN, in.clientCN)) {
		return false
	}
	switch r.WebSocket {
	case WebSocketOnly:
		return in.websocket()
	case WebSocketNot:
		return !in.websocket()
	}
	return true
}

// matchSNI reports whether name matches one of patterns: exactly, or a
// "*.example.com" pattern covering exactly one more label. Names compare
// case-insensitively and without a trailing dot.
func matchSNI(patterns []string, name string) bool {
	if name == "" {
		return false
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, p := range patterns {
		if p == name {
			return true
		}
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			if i := strings.IndexByte(name, '.'); i > 0 && name[i:] == suffix {
				return true
			}
		}
	}
	return false
}

// matchHello reports whether the route's SNI and ALPN matchers accept a
// ClientHello: the server name asked for, and any protocol offered.
func (r *Route) matchHello(h *tlsterm.Hello) bool {
	if len(r.SNI) > 0 && !matchSNI(r.SNI, h.ServerName) {
		return false
	}
	if len(r.ALPN) > 0 && !slices.ContainsFunc(h.ALPN, func(p string) bool { return slices.Contains(r.ALPN, p) }) {
		return false
	}
	return true
}

// helloRoute returns the route a ClientHello decides: the first whose SNI
// and ALPN matchers accept it. A terminating route means "terminate, then
// route among the terminating routes"; nil means no route can match.
func helloRoute(routes []Route, h *tlsterm.Hello) *Route {
	for i := range routes {
		if routes[i].matchHello(h) {
			return &routes[i]
		}
	}
	return nil
}

// selectRoute returns the first route that matches in, or nil.
// Passthrough routes were decided on the ClientHello and are skipped.
func selectRoute(routes []Route, in *matchInput) *Route {
	for i := range routes {
		if !routes[i].Passthrough && routes[i].match(in) {
			return &routes[i]
		}
	}
	return nil
}
