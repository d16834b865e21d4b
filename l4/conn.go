package l4

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"sluice/splice"
	"sluice/tlsterm"
)

// ConnIDs hands out connection ids unique to this process and unlikely to
// repeat across restarts: a random prefix and a counter, such as
// "3f9a1c2e-42". The same id appears in the access log and in the PROXY v2
// PP2_TYPE_UNIQUE_ID TLV, so backend and proxy logs can be joined.
type ConnIDs struct {
	prefix string
	n      atomic.Uint64
}

// NewConnIDs returns a generator with a fresh random prefix.
func NewConnIDs() *ConnIDs {
	var b [4]byte
	rand.Read(b[:])
	return &ConnIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *ConnIDs) next() string { return g.prefix + strconv.FormatUint(g.n.Add(1), 10) }

// Reasons a connection ends before its relay starts; relays end with a
// splice.Reason.
const (
	reasonUntrusted   = "untrusted_proxy"
	reasonProxyHeader = "proxy_header"
	reasonHandshake   = "handshake"
	// reasonNoALPN: the client offered only protocols its route cannot
	// carry, and got the no_application_protocol alert (see alpnFor).
	reasonNoALPN   = "no_application_protocol"
	reasonPeek     = "peek"
	reasonSilent   = "client_silent"
	reasonHello    = "client_hello"
	reasonNoRoute  = "no_route"
	reasonUpstream = "upstream_unavailable"
	// reasonNoDescriptors: the dial failed for want of a descriptor here,
	// which says nothing about the backend.
	reasonNoDescriptors = "out_of_descriptors"
	reasonUpstreamIO    = "upstream_write"
	// reasonHealthCheck: a load balancer's check that hung up before it
	// sent a byte (see conn.healthCheck).
	reasonHealthCheck = "health_check"
	// reasonLifetime: the connection reached the listener's
	// max_connection_lifetime.
	reasonLifetime = "max_connection_lifetime"
	// reasonHandshakeLimit: no handshake slot came free in time (see
	// Config.MaxHandshakes).
	reasonHandshakeLimit = "max_handshakes"
	// reasonKernelTLS: the kernel took some of the keys and refused the
	// rest, which leaves the socket usable by no one.
	reasonKernelTLS = "ktls"
)

// conn is one accepted connection on its way through the server.
type conn struct {
	srv   *Server
	raw   net.Conn // the accepted socket; kept so half-close never depends on a wrapper
	id    string
	start time.Time

	client, local net.Addr // as learnt from PROXY, else the socket's
	tls           *tlsterm.Info
	hello         *tlsterm.Hello // the ClientHello of a passthrough connection
	// rec is under the *tls.Conn of a connection that may be handed to
	// kernel TLS, until handOver; tr is the Transport beneath it.
	rec *tlsterm.RecordConn
	tr  *splice.Transport
	// layer is where a terminated connection's record layer went: "kernel"
	// or "userspace", and if userspace, fallback says why and fallbackErr
	// in detail.
	layer, fallback string
	fallbackErr     error
	// kernel is the connection the kernel's TLS runs, if it does.
	kernel  *tlsterm.KernelConn
	notTLS  bool    // a listener that peeks found no TLS: plain routes only
	peeked  []byte  // bytes read by the peek, for the backend
	headBuf *[]byte // the pooled buffer peeked points into
	route   *Route
	backend *Backend
	// keepAlive sets the backend socket's keepalive a while after the
	// dial, unless the connection ends first.
	keepAlive *lateKeepAlive
	stats     splice.Stats
	reason    string

	// healthCheck: the connection came from a trusted proxy with a PROXY
	// LOCAL header, which a proxy sends for connections of its own (HAProxy's
	// checks); logged at debug and counted apart.
	healthCheck bool
	// handshake and dial are how long the TLS handshake and the connect
	// to the backend took; zero if they did not happen.
	handshake, dial time.Duration
	// pre counts the client's bytes that reached the backend before the
	// relay (peeked, or read past the PROXY header), and counts those the
	// relay moves; together they are the connection's bytes, which a
	// scrape reads while the relay runs.
	pre    int64
	counts splice.Counters
	// prev and next link the connection into its listener's relays while
	// its relay runs (see listenerMeter).
	prev, next *conn
	// ipKey is the client as the per-client limits count it, when they
	// counted this connection (ipHeld).
	ipKey  netip.Prefix
	ipHeld bool
	// relay is the running relay, once started, to move it (see move.go);
	// adopted says an old process moved the connection here.
	relay   atomic.Pointer[splice.Handle]
	adopted bool
	// clientEnded, backendEnded: an adopted connection one of whose
	// peers had already ended its stream (see splice.Options).
	clientEnded, backendEnded splice.End
	// lifetime ends the relay at MaxLifetime, and endLifetime releases
	// its timer; nil without one.
	lifetime    context.Context
	endLifetime context.CancelFunc
}

// bytes returns the bytes moved so far, client to backend and back.
func (c *conn) bytes() (in, out int64) {
	return c.pre + c.counts.In.Load(), c.counts.Out.Load()
}

func newConn(s *Server, raw net.Conn) *conn {
	return &conn{
		srv:    s,
		raw:    raw,
		id:     s.IDs.next(),
		start:  time.Now(),
		client: raw.RemoteAddr(),
		local:  raw.LocalAddr(),
	}
}

// serve carries the connection up to its relay, which goes on by itself;
// finish writes the access-log line when the connection ends, whether
// before the relay or at its end.
func (c *conn) serve(ctx context.Context) {
	log := c.srv.Logger
	if log.Enabled(ctx, slog.LevelDebug) {
		log.Debug("conn open", "conn", c.id, "client", c.client.String(), "listener", c.srv.Name)
	}
	// The PROXY header, the handshake and the peeks wait on deadlines,
	// not on ctx. Until the relay (which watches ctx itself), cancelling
	// ctx aborts the socket, so that a forced shutdown does not wait for
	// their timeouts.
	stop := context.AfterFunc(ctx, func() { splice.Abort(c.raw) })
	cur, prefix, route, err := c.open(ctx)
	switch {
	case err != nil:
		c.end(ctx, stop, err)
	case route == nil && c.tls != nil && c.srv.peeksHead:
		// The handshake grew this goroutine's stack to about 16 KiB, which
		// it would keep while the peek waits for the client's first
		// bytes; a fresh goroutine waits with a small one.
		go c.proceed(ctx, stop, cur, prefix, nil)
	default:
		c.proceed(ctx, stop, cur, prefix, route)
	}
}

// proceed carries the connection from its route to its relay, and ends it
// if it fails on the way.
func (c *conn) proceed(ctx context.Context, stop func() bool, cur net.Conn, prefix []byte, route *Route) {
	if err := c.connect(ctx, stop, cur, prefix, route); err != nil {
		c.end(ctx, stop, err)
	}
}

// end finishes a connection that failed before its relay; its sockets are
// closed.
func (c *conn) end(ctx context.Context, stop func() bool, err error) {
	stop()
	c.releasePeek()
	if ctx.Err() != nil {
		// Cut by the end of a drain before its relay began: that, not
		// the phase it was in, is why it ended.
		c.reason, err = string(splice.Canceled), nil
	}
	c.finish(err)
}

// finish logs and counts the connection and releases what it held.
func (c *conn) finish(err error) {
	if c.ipHeld {
		c.srv.perIP.release(c.ipKey, time.Now())
	}
	if c.endLifetime != nil {
		c.endLifetime()
	}
	if c.backend != nil {
		c.backend.done()
	}
	c.keepAlive.stop()
	if c.healthCheck {
		c.srv.meter.healthCheck()
	}
	// Counted after everything else it releases, so that a scrape that
	// sees the connection closed sees the rest of its end too.
	c.srv.meter.ended(c)
	c.logAccess(err)
	c.srv.connDone()
}

// open reads the PROXY header, peeks at the ClientHello and terminates TLS,
// as the listener asks. It returns the connection as the backend's bytes
// will be read from it (the socket or the TLS conn over it), the bytes
// already read from it, and the route if the ClientHello decided one. On
// error, the socket is closed.
func (c *conn) open(ctx context.Context) (cur net.Conn, prefix []byte, route *Route, err error) {
	s := c.srv
	cur = c.raw
	// prefix holds bytes read past a PROXY header: the start of the
	// client's stream, for the TLS handshake or the backend.
	if s.AcceptProxy {
		if !trusted(c.raw.RemoteAddr(), s.TrustedProxies) {
			splice.Abort(c.raw)
			c.reason = reasonUntrusted
			return nil, nil, nil, ErrUntrustedProxy
		}
		h, rest, err := readProxyHeader(c.raw, s.proxyTimeout())
		if err != nil {
			splice.Abort(c.raw)
			c.reason = reasonProxyHeader
			if errors.Is(err, errHungUp) {
				// A trusted proxy's connect-and-close check.
				c.reason, c.healthCheck = reasonHealthCheck, true
			}
			return nil, nil, nil, err
		}
		prefix = rest
		c.healthCheck = h.Command.IsLocal()
		// LOCAL (health checks) and UNKNOWN keep the socket addresses.
		if h.Command.IsProxy() && h.SourceAddr != nil && h.DestinationAddr != nil {
			c.client, c.local = h.SourceAddr, h.DestinationAddr
		}
	}
	if err := c.admit(); err != nil {
		splice.Abort(c.raw)
		return nil, nil, nil, err
	}

	if s.peeksHello() {
		hello, r, rest, err := c.peekHello(prefix)
		prefix = rest
		switch {
		case errors.Is(err, tlsterm.ErrNotTLS) && s.TLSConfig == nil:
			// Not TLS on a plain listener: the plain routes decide.
			c.notTLS = true
		case err != nil:
			splice.Abort(c.raw)
			c.reason = reasonHello
			if c.healthCheck && hungUp(err) {
				c.reason = reasonHealthCheck
			}
			return nil, nil, nil, err
		case r == nil:
			splice.Abort(c.raw)
			c.reason = reasonNoRoute
			return nil, nil, nil, ErrNoRoute
		case r.Passthrough:
			route, c.hello = r, &hello
		}
	}

	if route == nil && s.TLSConfig != nil {
		// Over a splice.Transport, the relay can tell when crypto/tls holds
		// no complete record, and wait for the socket with nothing held.
		c.tr = splice.NewTransport(c.raw, prefix)
		var under net.Conn = c.tr
		cfg := s.TLSConfig
		if _, tcp := c.raw.(*net.TCPConn); tcp && s.keyLogTLS != nil {
			// Read record by record, so that the kernel can take over.
			c.rec = tlsterm.NewRecordConn(c.tr)
			under, cfg = c.rec, s.keyLogTLS
		}
		tc := tls.Server(under, cfg)
		// A trusted proxy that sent its header and hung up without a byte
		// more checked that sluice accepts: a health check.
		silentProxy := s.AcceptProxy && len(prefix) == 0
		prefix = nil
		if err := c.handshakeSlot(ctx); err != nil {
			splice.Abort(c.raw)
			return nil, nil, nil, err
		}
		start := time.Now()
		err := c.handshakeInTurn(ctx, tc)
		c.handshake = time.Since(start)
		if s.handshakes != nil {
			s.handshakes.give()
		}
		if err != nil {
			// A plain close: crypto/tls has queued its alert, which says
			// why, and a reset could discard it.
			c.raw.Close()
			c.reason = reasonHandshake
			why := handshakeFailure(err)
			switch {
			case why == hsFailNoALPN:
				c.reason = reasonNoALPN
			case why == hsFailClosed && (c.healthCheck || silentProxy):
				c.reason, c.healthCheck = reasonHealthCheck, true
			}
			if !c.healthCheck {
				s.meter.handshakeFailed(why)
			}
			return nil, nil, nil, err
		}
		info := tlsterm.Describe(tc.ConnectionState())
		c.tls = &info
		s.meter.handshakeDone(info.Version, info.Cipher, info.Resumed, c.handshake)
		cur = tc
	}
	return cur, prefix, route, nil
}

// connect routes the connection, if the ClientHello did not, dials the
// backend, sends it the preamble and starts the relay. It returns nil once
// the relay has started (the relay calls finish when it ends); on error,
// the connection is closed.
func (c *conn) connect(ctx context.Context, stop func() bool, cur net.Conn, prefix []byte, route *Route) error {
	if route == nil {
		var err error
		if route, err = c.selectRoute(cur, &prefix); err != nil {
			// From here on a failure is an abort: a RST, and never
			// close_notify, which would tell a TLS client that the
			// server ended a complete exchange.
			splice.Abort(cur)
			return err
		}
	}
	c.route = route
	up := route.Upstream

	start := time.Now()
	backend, srv, err := up.Dial(ctx)
	c.dial = time.Since(start)
	if err != nil {
		splice.Abort(cur)
		c.reason = reasonUpstream
		if outOfDescriptors(err) {
			c.reason = reasonNoDescriptors
		}
		return err
	}
	c.backend = srv
	c.keepAlive = up.keepAliveLater(backend)

	if err := c.writePreamble(backend, up, prefix); err != nil {
		splice.Abort(cur)
		splice.Abort(backend)
		c.reason = reasonUpstreamIO
		return err
	}

	// The peeked bytes are with the backend now; the relay does not need
	// the 8 KiB they sit in for the life of the connection.
	c.pre = int64(len(c.peeked) + len(prefix))
	c.releasePeek()
	if c.tls != nil {
		if cur, err = c.handOver(cur); err != nil {
			splice.Abort(c.raw)
			splice.Abort(backend)
			c.reason = reasonKernelTLS
			return err
		}
	}
	stop()
	c.startRelay(ctx, cur, backend)
	return nil
}

// startRelay starts the relay between the client's connection, cur, and
// the backend's, linked into the listener's meter and ready to move.
func (c *conn) startRelay(ctx context.Context, cur, backend net.Conn) {
	s := c.srv
	s.meter.relaying(c)
	if s.LogOpen && !c.adopted {
		c.logOpen()
	}
	idle := s.IdleTimeout
	if c.route.IdleTimeout > 0 {
		idle = c.route.IdleTimeout
	}
	if s.MaxLifetime > 0 {
		// The relay ends as at the end of a drain; relayDone tells the
		// two apart.
		ctx, c.endLifetime = context.WithDeadline(ctx, c.start.Add(s.MaxLifetime))
		c.lifetime = ctx
	}
	c.relay.Store(splice.Start(ctx, cur, backend, splice.Options{
		IdleTimeout:      idle,
		HalfCloseTimeout: s.HalfCloseTimeout,
		Buffers:          s.Buffers,
		Pipes:            s.Pipes,
		Parker:           s.Parker,
		ParkAfter:        s.ParkAfter,
		Counters:         &c.counts,
		ClientEnded:      c.clientEnded,
		BackendEnded:     c.backendEnded,
	}, c.relayDone))
}

// relayDone is the relay's completion callback.
func (c *conn) relayDone(st splice.Stats, err error) {
	st.BytesIn += c.pre
	c.stats = st
	c.reason = string(st.Reason)
	if st.Reason == splice.Canceled && c.lifetime != nil && c.srv.ctx.Err() == nil &&
		errors.Is(c.lifetime.Err(), context.DeadlineExceeded) {
		c.reason = reasonLifetime
	}
	c.finish(err)
}

// peekHello peeks at the ClientHello, within the handshake timeout, and
// returns it with the route it decides (see helloRoute). rest is every
// byte read from the client so far, for the backend or the handshake.
func (c *conn) peekHello(prefix []byte) (hello tlsterm.Hello, r *Route, rest []byte, err error) {
	s := c.srv
	c.raw.SetReadDeadline(time.Now().Add(s.handshakeTimeout()))
	if len(prefix) == 0 {
		if prefix, err = readFirst(c.raw); err != nil {
			c.raw.SetReadDeadline(time.Time{})
			return hello, nil, nil, fmt.Errorf("peek ClientHello: %w", err)
		}
	}
	pr := &prefixReader{prefix: prefix, r: c.raw}
	br := s.getHelloReader(pr)
	hello, err = tlsterm.PeekClientHello(br)
	c.raw.SetReadDeadline(time.Time{})
	b, _ := br.Peek(br.Buffered())
	rest = append(append(make([]byte, 0, len(b)+len(pr.prefix)), b...), pr.prefix...)
	s.putHelloReader(br)
	if err != nil {
		return hello, nil, rest, fmt.Errorf("peek ClientHello: %w", err)
	}
	return hello, helloRoute(s.Routes, &hello), rest, nil
}

// selectRoute matches the routes, peeking at the first request head only if
// a route asks whether the connection is a WebSocket upgrade.
func (c *conn) selectRoute(cur net.Conn, prefix *[]byte) (*Route, error) {
	in := matchInput{}
	if c.tls != nil {
		in.sni, in.alpn, in.clientCN = c.tls.SNI, c.tls.ALPN, c.tls.ClientCN
	}
	var peekErr error
	peeked, websocket, silent := false, false, false
	in.websocket = func() bool {
		if !peeked {
			peeked = true
			websocket, silent, peekErr = c.peek(cur, prefix)
		}
		return websocket
	}
	r := selectRoute(c.srv.Routes, &in)
	switch {
	case peekErr != nil:
		c.reason = reasonPeek
		return nil, peekErr
	case r == nil && c.notTLS:
		c.reason = reasonNoRoute
		return nil, fmt.Errorf("%w: the stream is not TLS, and no route takes plain TCP", ErrNoRoute)
	case r == nil:
		c.reason = reasonNoRoute
		return nil, ErrNoRoute
	case silent && !r.ServerFirst:
		// Nothing to route on and nothing for a backend: a backend
		// connection held for the idle timeout would be the client's
		// whole cost to sluice's.
		c.reason = reasonSilent
		return nil, ErrClientSilent
	}
	return r, nil
}

// peek reads up to maxHeadBytes of the first request head, within the
// handshake timeout, and reports whether it is a WebSocket upgrade. The
// bytes read are kept for the backend. A timeout or EOF just means no match,
// and silent says the client sent nothing at all before it; other read
// errors end the connection.
//
// The deadline covers writes too: a *tls.Conn writes from inside Read (the
// answer to a client's KeyUpdate), and a client that never reads would
// otherwise hold that write, and the conn, forever.
func (c *conn) peek(cur net.Conn, prefix *[]byte) (websocket, silent bool, err error) {
	c.srv.peeking.Add(1)
	defer c.srv.peeking.Add(-1)
	cur.SetDeadline(time.Now().Add(c.srv.handshakeTimeout()))
	defer cur.SetDeadline(time.Time{})
	pr := &prefixReader{prefix: *prefix, r: cur}
	if len(pr.prefix) == 0 {
		first, err := readFirst(cur)
		if err != nil {
			return false, true, peekError(err)
		}
		pr.prefix = first
	}
	c.headBuf = c.srv.getHeadBuf()
	n, ws, err := readRequestHead(pr, *c.headBuf)
	*prefix = pr.prefix
	c.peeked = (*c.headBuf)[:n:n]
	return ws, false, peekError(err)
}

// firstPeekBytes is the buffer the peeks wait for a client's first bytes
// in: a usual request line and a few headers, or most ClientHellos.
const firstPeekBytes = 512

// readFirst waits for r's first bytes, at most firstPeekBytes of them, so
// that a client that keeps silent holds that much rather than a peek's
// whole buffer (8 KiB for a request head, 16 KiB for a ClientHello). It
// returns at least one byte, or the error that ended the wait.
func readFirst(r io.Reader) ([]byte, error) {
	first := make([]byte, firstPeekBytes)
	for {
		n, err := r.Read(first)
		if n > 0 {
			return first[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// peekError is nil for the ways a peek may end without a whole head (the
// deadline, EOF), and err otherwise.
func peekError(err error) error {
	var ne net.Error
	if err == nil || errors.Is(err, io.EOF) || (errors.As(err, &ne) && ne.Timeout()) {
		return nil
	}
	return fmt.Errorf("peek request head: %w", err)
}

// prefixReader reads prefix, then r; prefix keeps what was not read.
type prefixReader struct {
	prefix []byte
	r      io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// releasePeek returns the peek buffer to the server's pool.
func (c *conn) releasePeek() {
	if c.headBuf != nil {
		c.srv.heads.Put(c.headBuf)
		c.headBuf, c.peeked = nil, nil
	}
}

// writePreamble sends the PROXY header, if the upstream wants one, the
// peeked bytes and the rest of what was read ahead (prefix) in one write,
// bounded by the connect timeout.
func (c *conn) writePreamble(backend net.Conn, up *Upstream, prefix []byte) error {
	var pre []byte
	if up.SendProxy != 0 {
		h, err := proxyHeader(up.SendProxy, c.client, c.local, c.tls, c.hello, c.id)
		if err != nil {
			return err
		}
		pre = h
	}
	pre = append(pre, c.peeked...)
	pre = append(pre, prefix...)
	if len(pre) == 0 {
		return nil
	}
	backend.SetWriteDeadline(time.Now().Add(up.connectTimeout()))
	if _, err := backend.Write(pre); err != nil {
		return fmt.Errorf("write to %s: %w", c.backend.Addr, err)
	}
	backend.SetWriteDeadline(time.Time{})
	return nil
}
