package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// wsTransport is an HTTP/1.1 transport for WebSocket upgrades that dials
// plain connections through d and TLS ones with dialTLS.
func wsTransport(d *dialer, dialTLS func(ctx context.Context, addr string) (net.Conn, error)) *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return d.dialTCP(ctx, addr)
		},
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialTLS(ctx, addr)
		},
		// A non-nil empty map disables HTTP/2: WebSocket needs HTTP/1.1.
		TLSNextProto:       map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableCompression: true,
		IdleConnTimeout:    10 * time.Second,
		ReadBufferSize:     1024, // only the upgrade response goes through these
		WriteBufferSize:    1024,
	}
}

// wsDial opens one WebSocket connection to rawURL through d, keeping and
// offering TLS sessions in cache (one client's own; nil keeps none), and
// says whether its TLS handshake resumed a session. The ticket a TLS 1.3
// server sends after the handshake reaches cache as the upgrade response
// is read. Each call has a transport of its own: a shared one may hand a
// dialed connection to another request than the one that dialed it, and
// the session and the resumption reported would not be this client's.
func wsDial(ctx context.Context, d *dialer, rawURL string, cache tls.ClientSessionCache) (*websocket.Conn, bool, error) {
	var dialed atomic.Pointer[tls.Conn]
	tr := wsTransport(d, func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := d.dialTLSCached(ctx, addr, cache)
		if err != nil {
			return nil, err
		}
		dialed.Store(c)
		return c, nil
	})
	defer tr.CloseIdleConnections()
	c, _, err := websocket.Dial(ctx, rawURL, &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: tr},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, false, err
	}
	tc := dialed.Load()
	return c, tc != nil && tc.ConnectionState().DidResume, nil
}

// openWSAll opens cfg.conns WebSocket connections to cfg.url through d
// (openAll: cfg.dialers at a time, each within the dial timeout) and
// returns those that opened, in order, with the READY report.
func openWSAll(ctx context.Context, cfg config, d *dialer, stderr io.Writer) ([]*websocket.Conn, openReport) {
	conns := make([]*websocket.Conn, cfg.conns)
	ready := openAll(ctx, cfg, stderr, func(ctx context.Context, i int) error {
		c, _, err := wsDial(ctx, d, cfg.url, nil)
		if err != nil {
			return err
		}
		conns[i] = c
		return nil
	})
	return slices.DeleteFunc(conns, func(c *websocket.Conn) bool { return c == nil }), ready
}

// closeWSAll closes conns with status 1000, dialers at a time, or at
// once (CloseNow) once ctx has ended; nil entries are skipped.
func closeWSAll(ctx context.Context, conns []*websocket.Conn, dialers int) {
	parallel(len(conns), dialers, func(i int) {
		c := conns[i]
		switch {
		case c == nil:
		case ctx.Err() != nil:
			c.CloseNow()
		default:
			c.Close(websocket.StatusNormalClosure, "")
		}
	})
}
