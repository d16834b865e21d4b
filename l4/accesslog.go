package l4

import (
	"context"
	"log/slog"
	"time"

	"sluice/splice"
)

// logAccess writes the connection's one access-log line. Ordinary endings
// are Info; failures that point at the backend or sluice itself are Warn.
func (c *conn) logAccess(err error) {
	attrs := make([]slog.Attr, 0, 20)
	attrs = append(attrs,
		slog.String("conn", c.id),
		slog.String("client", c.client.String()),
		slog.String("listener", c.srv.Name),
	)
	if c.tls != nil {
		attrs = append(attrs,
			slog.String("sni", c.tls.SNI),
			slog.String("alpn", c.tls.ALPN),
			slog.String("tls", c.tls.Version),
			slog.String("cipher", c.tls.Cipher),
		)
		if c.tls.ClientCN != "" {
			attrs = append(attrs, slog.String("client_cn", c.tls.ClientCN))
		}
		if c.tls.Resumed {
			attrs = append(attrs, slog.Bool("resumed", true))
		}
	}
	if c.hello != nil {
		attrs = append(attrs, slog.String("sni", c.hello.ServerName), slog.String("mode", "passthrough"))
	}
	if c.route != nil {
		attrs = append(attrs, slog.String("route", c.route.Name), slog.String("upstream", c.route.Upstream.Name))
	}
	if c.backend != nil {
		attrs = append(attrs, slog.String("server", c.backend.Addr))
	}
	attrs = append(attrs,
		slog.Int64("bytes_in", c.stats.BytesIn),
		slog.Int64("bytes_out", c.stats.BytesOut),
		slog.Duration("dur", time.Since(c.start)),
		slog.String("reason", c.reason),
	)
	level := slog.LevelInfo
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
		switch c.reason {
		case reasonUpstream, reasonUpstreamIO, string(splice.BackendError):
			level = slog.LevelWarn
		}
	}
	c.srv.Logger.LogAttrs(context.Background(), level, "access", attrs...)
}
