package l4

import (
	"context"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"

	"sluice/splice"
)

// Bounds on what a client can put into an access line. A client chooses
// its SNI, ALPN and certificate names, and crypto/tls quotes its whole
// offer in some errors ("client offered: [...]", 146 KB for a 60 KB
// hello), so without them a client decides how much log it costs.
const (
	maxLoggedError = 256 // bytes of an error's text
	maxLoggedName  = 253 // bytes of a client-supplied name: a DNS name's limit
)

// Connections that end before their relay (a failed handshake, no route,
// no upstream) are what a scan or a flood produces, all alike: per
// listener and reason, failBurst lines a failInterval are logged in full,
// and the rest are counted (see rateLog).
const (
	failBurst    = 10
	failInterval = time.Second
)

// logAccess writes the connection's one access-log line. Ordinary endings
// are Info; failures that point at the backend or sluice itself are Warn.
func (c *conn) logAccess(err error) {
	level := c.level()
	if !c.srv.Logger.Enabled(context.Background(), level) {
		return
	}
	var suppressed int64
	// The relay sets stats.Reason when it ends: without it, the connection
	// never got that far, and its line counts against the reason's budget.
	if c.stats.Reason == "" {
		var ok bool
		if ok, suppressed = c.srv.failLogs.allow(c.srv, c.reason, level); !ok {
			return
		}
	}

	attrs := c.attrs(make([]slog.Attr, 0, 24))
	attrs = append(attrs,
		slog.Int64("bytes_in", c.stats.BytesIn),
		slog.Int64("bytes_out", c.stats.BytesOut),
		slog.Duration("dur", time.Since(c.start)),
		slog.String("reason", c.reason),
	)
	if c.kernel != nil {
		if n := c.kernel.KeyUpdates(); n > 0 {
			attrs = append(attrs, slog.Int64("key_updates", n))
		}
	}
	msg := "access"
	switch c.stats.Reason {
	case "":
	case splice.HandedOver:
		// Not the end of the connection: the new process writes its
		// access line when it ends.
		msg = "moved"
	default:
		attrs = append(attrs,
			slog.String("client_end", string(c.stats.ClientEnd)),
			slog.String("backend_end", string(c.stats.BackendEnd)),
		)
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", clip(err.Error(), maxLoggedError)))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	c.srv.Logger.LogAttrs(context.Background(), level, msg, attrs...)
}

// attrs appends what is known of the connection when its relay starts:
// who, through which listener and TLS session, to which server, and how
// long the handshake and the connect took.
func (c *conn) attrs(attrs []slog.Attr) []slog.Attr {
	attrs = append(attrs,
		slog.String("conn", c.id),
		slog.String("client", c.client.String()),
		slog.String("listener", c.srv.Name),
	)
	if c.tls != nil {
		attrs = append(attrs,
			slog.String("sni", clip(c.tls.SNI, maxLoggedName)),
			slog.String("alpn", clip(c.tls.ALPN, maxLoggedName)),
			slog.String("tls", c.tls.Version),
			slog.String("cipher", c.tls.Cipher),
			slog.Bool("resumed", c.tls.Resumed),
		)
		if c.tls.ClientCN != "" {
			attrs = append(attrs, slog.String("client_cn", clip(c.tls.ClientCN, maxLoggedName)))
		}
		if c.layer != "" {
			attrs = append(attrs, slog.String("record_layer", c.layer))
		}
		if c.fallback != "" && c.fallback != fallbackOff {
			attrs = append(attrs, slog.String("ktls_fallback", c.fallback))
			if c.fallbackErr != nil {
				attrs = append(attrs, slog.String("ktls_error", clip(c.fallbackErr.Error(), maxLoggedError)))
			}
		}
	}
	if c.handshake > 0 {
		attrs = append(attrs, slog.Duration("handshake", c.handshake))
	}
	if c.hello != nil {
		attrs = append(attrs, slog.String("sni", clip(c.hello.ServerName, maxLoggedName)), slog.String("mode", "passthrough"))
	}
	if c.route != nil {
		attrs = append(attrs, slog.String("route", c.route.Name), slog.String("upstream", c.route.Upstream.Name))
	}
	if c.backend != nil {
		attrs = append(attrs, slog.String("server", c.backend.Addr))
	}
	if c.dial > 0 {
		attrs = append(attrs, slog.Duration("connect", c.dial))
	}
	return attrs
}

// logOpen writes the line of a connection whose relay is starting (see
// Server.LogOpen); its access line follows when it ends.
func (c *conn) logOpen() {
	c.srv.Logger.LogAttrs(context.Background(), slog.LevelInfo, "open", c.attrs(make([]slog.Attr, 0, 16))...)
}

// level is the access line's level: Debug for a load balancer's health
// check, Warn where the backend failed, or sluice itself; Info for
// everything clients do.
func (c *conn) level() slog.Level {
	if c.healthCheck {
		return slog.LevelDebug
	}
	switch c.reason {
	case reasonIPConns, reasonIPRate, reasonHandshakeLimit:
		// Counted, and summed up once a second by limitLogs.
		return slog.LevelDebug
	}
	switch c.reason {
	case reasonUpstream, reasonUpstreamIO, reasonNoDescriptors,
		string(splice.BackendError), string(splice.BackendReset):
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// clip cuts s to at most max bytes, on a rune boundary, and says how much
// was cut: "…[+146012 bytes]".
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && cut > max-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[+" + strconv.Itoa(len(s)-cut) + " bytes]"
}

// failLogs holds a listener's rateLogs of connections that failed before
// their relay, one per reason (a short, fixed list). The zero value is
// ready.
type failLogs struct{ reasonLogs }

// allow applies the budget of reason's failures on s; see rateLog.allow.
func (f *failLogs) allow(s *Server, reason string, level slog.Level) (ok bool, suppressed int64) {
	r := f.get(s, reason, func() *rateLog {
		return newRateLog(failInterval, failBurst, func(n int64) {
			s.Logger.LogAttrs(context.Background(), level, "access lines suppressed",
				slog.String("listener", s.Name), slog.String("reason", reason), slog.Int64("suppressed", n))
		})
	})
	return r.allow(time.Now())
}
