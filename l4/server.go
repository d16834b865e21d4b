package l4

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sluice/splice"
	"sluice/tlsterm"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("l4: server closed")

// Server accepts connections on one listener and carries each through
// its life: accept → limit → PROXY header → TLS handshake → peek → route
// → dial → relay → access log. Zero values mean defaults.
type Server struct {
	// Name identifies the listener in logs.
	Name string
	// TLSConfig terminates TLS; nil serves plain TCP.
	TLSConfig *tls.Config
	// Routes are tried in order; the first match wins.
	Routes []Route
	// ALPN are the application protocols the listener may offer, in order
	// of preference. Each client is offered those that every route it can
	// take carries (see alpnFor); TLSConfig must ask alpnFor.
	ALPN []string

	// AcceptProxy requires a PROXY header from peers in TrustedProxies and
	// refuses every other peer.
	AcceptProxy    bool
	TrustedProxies []netip.Prefix

	ProxyTimeout     time.Duration // zero: DefaultProxyTimeout
	HandshakeTimeout time.Duration // zero: DefaultHandshakeTimeout
	IdleTimeout      time.Duration // zero: splice.DefaultIdleTimeout
	HalfCloseTimeout time.Duration // zero: splice.DefaultHalfCloseTimeout
	// MaxConns bounds concurrent connections; zero means no limit. When the
	// limit is reached Serve stops accepting and clients wait in the
	// kernel's accept queue, as with HAProxy's maxconn.
	MaxConns int

	Logger  *slog.Logger       // nil: discard
	Buffers *splice.BufferPool // nil: splice's default
	Pipes   *splice.PipePool   // nil: splice's default
	// Parker, if set, holds the relays of idle connections without
	// goroutines (see splice.Parker); nil: idle relays keep theirs.
	Parker *splice.Parker
	// ParkAfter is how long a relay direction stays quiet before it is
	// parked; zero means splice.DefaultParkAfter.
	ParkAfter time.Duration
	IDs       *ConnIDs // nil: a private generator
	// LogOpen logs a line when a connection's relay starts, as well as the
	// access line at its end (HAProxy's option logasap): for connections
	// that last hours.
	LogOpen bool

	// MaxLifetime closes a connection this long after its accept; zero
	// means no limit.
	MaxLifetime time.Duration

	meter *listenerMeter // nil: not measured (a Server without a Proxy)
	// perIP holds the per-client limits, shared with the servers of the
	// same listener in other configurations; nil: none.
	perIP *ipLimits
	// limitLogs says, at most once a second per limit, how many clients
	// a per-client limit refused.
	limitLogs limitLogs
	// handshakes bounds the TLS handshakes in progress in the process
	// (max_handshakes), shared by every server; nil: no limit.
	handshakes *connLimit
	hsQueue    time.Duration // how long a handshake waits for a slot
	// turns shares the CPU among the process's handshakes; nil: they
	// all compute at once.
	turns *hsTurns
	// ktls is what the kernel's TLS can take; nil: ktls = "off". With it,
	// keyLogTLS is TLSConfig with a key log per connection (nil when the
	// kernel has no TLS), for the hand-over.
	ktls      *tlsterm.KernelTLS
	keyLogTLS *tls.Config

	initOnce  sync.Once
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	closing   chan struct{}  // closed when Shutdown starts
	retiring  chan struct{}  // closed by retire
	keepLns   bool           // retire leaves the listeners open, for the next server
	serving   sync.WaitGroup // Serve loops
	conns     sync.WaitGroup
	active    atomic.Int64 // connections being handled, for logs
	peeking   atomic.Int64 // connections waiting in the peek at a request head
	// limit bounds connections (MaxConns); a reload hands it to the next
	// configuration's server of the same listener (see Proxy.Reload).
	limit     *connLimit
	failLogs  failLogs  // access lines of failed connections, rate-limited
	heads     sync.Pool // *[]byte of maxHeadBytes, for peeking
	hellos    sync.Pool // *bufio.Reader of tlsterm.MaxHelloBytes, for ClientHello peeks
	passRoute bool      // some route is a passthrough route: peek at ClientHellos
	peeksHead bool      // some route asks for a WebSocket upgrade: peek at request heads
	// ctx is the parent of every connection's context; cancel closes them
	// all at the end of a drain.
	ctx    context.Context
	cancel context.CancelFunc
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.listeners = make(map[net.Listener]struct{})
		s.closing = make(chan struct{})
		s.retiring = make(chan struct{})
		if s.limit == nil {
			s.limit = newConnLimit(s.MaxConns)
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		if s.IDs == nil {
			s.IDs = NewConnIDs()
		}
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		for _, r := range s.Routes {
			s.passRoute = s.passRoute || r.Passthrough
			s.peeksHead = s.peeksHead || (!r.Passthrough && r.WebSocket != WebSocketAny)
		}
	})
}

// getHeadBuf returns a maxHeadBytes buffer for a peek.
func (s *Server) getHeadBuf() *[]byte {
	if b, ok := s.heads.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, maxHeadBytes)
	return &b
}

// peeksHello reports whether connections start with a ClientHello peek.
func (s *Server) peeksHello() bool { return s.passRoute }

// getHelloReader returns a reader big enough for any ClientHello, reading r.
func (s *Server) getHelloReader(r io.Reader) *bufio.Reader {
	if br, ok := s.hellos.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, tlsterm.MaxHelloBytes)
}

// putHelloReader returns br to the pool, holding nothing of its conn.
func (s *Server) putHelloReader(br *bufio.Reader) {
	br.Reset(nil)
	s.hellos.Put(br)
}

func (s *Server) proxyTimeout() time.Duration {
	if s.ProxyTimeout <= 0 {
		return DefaultProxyTimeout
	}
	return s.ProxyTimeout
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout <= 0 {
		return DefaultHandshakeTimeout
	}
	return s.HandshakeTimeout
}

// Serve accepts connections on ln until Shutdown, and closes ln. It returns
// ErrServerClosed after Shutdown, or the listener's error if it fails for
// good. Temporary accept errors (such as running out of file descriptors)
// are logged and retried with a backoff from 5ms to 1s.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	select {
	case <-s.closing:
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	case <-s.retiring:
		s.mu.Unlock()
		return errRetired
	default:
	}
	s.listeners[ln] = struct{}{}
	s.serving.Add(1)
	s.mu.Unlock()
	retired := false
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		keep := retired && s.keepLns
		s.mu.Unlock()
		if !keep {
			ln.Close()
		}
		s.serving.Done()
	}()

	// Saturated, every pass of the loop finds the semaphore full: say so at
	// most once a second, with how many times it happened since the last
	// line, rather than once per client.
	warnFull := func(times int64) {
		s.Logger.Warn("max_connections reached; new clients wait in the accept queue",
			"listener", s.Name, "max_connections", s.MaxConns, "times", times)
	}
	full := newRateLog(time.Second, 1, warnFull)
	defer full.stop()

	var backoff time.Duration
	// An episode of failed accepts (no descriptor left, say) is one
	// warning when it starts and one line when it is over, however long
	// it lasts: not a line per retry. Out of descriptors, each one freed
	// lets one accept through before the next fails, so an episode is
	// over only once accepts have gone a second without failing.
	var failures int64
	var failingSince, lastFailure time.Time
	wasFull := false
	for {
		if ok, w := s.limit.take(); !ok {
			if !wasFull {
				wasFull = true
				s.meter.limitHit()
			}
			if ok, n := full.allow(time.Now()); ok {
				warnFull(n + 1)
			}
			select {
			case <-w.ready: // the slot is ours
			case <-s.closing:
				s.limit.withdraw(w)
				return ErrServerClosed
			case <-s.retiring:
				s.limit.withdraw(w)
				retired = true
				return errRetired
			}
		}
		raw, err := ln.Accept()
		if err != nil {
			s.release()
			select {
			case <-s.closing:
				return ErrServerClosed
			case <-s.retiring:
				retired = true
				return errRetired
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			lastFailure = time.Now()
			if failures == 0 {
				failingSince = lastFailure
				s.Logger.Warn("accept failed; retrying, from 5ms to 1s apart, until it succeeds; connections already accepted are served on",
					"listener", s.Name, "error", err)
			}
			failures++
			select {
			case <-time.After(backoff):
			case <-s.closing:
				return ErrServerClosed
			case <-s.retiring:
				retired = true
				return errRetired
			}
			continue
		}
		backoff = 0
		if failures > 0 && time.Since(lastFailure) >= time.Second {
			s.Logger.Info("accept recovered", "listener", s.Name, "failures", failures,
				"lasted", lastFailure.Sub(failingSince).Round(time.Millisecond))
			failures = 0
		}
		// Count the conn under mu, where Shutdown closes s.closing: either it
		// is counted before Shutdown waits, or it is refused. An Add racing
		// with Wait could let Shutdown return with a conn still starting.
		s.mu.Lock()
		select {
		case <-s.closing:
			s.mu.Unlock()
			raw.Close()
			s.release()
			return ErrServerClosed
		default:
		}
		s.conns.Add(1)
		s.active.Add(1)
		s.mu.Unlock()
		wasFull = false
		s.meter.acceptedConn()
		go s.handle(raw)
	}
}

func (s *Server) release() { s.limit.give() }

// errRetired is what Serve returns once retire stopped it.
var errRetired = errors.New("l4: server retired")

type deadliner interface{ SetDeadline(time.Time) error }

// retire stops the server accepting: every Serve returns errRetired, and
// retire returns once they all have. keepListeners leaves the listeners
// open (with no deadline) for the next configuration's server, which
// takes over the same sockets: clients that connect meanwhile wait in
// the accept queue. Connections already accepted go on; Shutdown still
// drains them.
func (s *Server) retire(keepListeners bool) {
	s.init()
	s.mu.Lock()
	select {
	case <-s.retiring:
		s.mu.Unlock()
		return
	default:
	}
	s.keepLns = keepListeners
	close(s.retiring)
	lns := make([]net.Listener, 0, len(s.listeners))
	for ln := range s.listeners {
		lns = append(lns, ln)
	}
	s.mu.Unlock()
	// A loop blocked in Accept wakes at a deadline in the past; one that
	// is about to call it finds the deadline passed.
	for _, ln := range lns {
		if d, ok := ln.(deadliner); ok {
			d.SetDeadline(time.Now())
		}
	}
	s.serving.Wait()
	if keepListeners {
		for _, ln := range lns {
			if d, ok := ln.(deadliner); ok {
				d.SetDeadline(time.Time{})
			}
		}
	}
}

// handle runs one connection; the semaphore slot was taken by Serve and
// is given back by connDone, when the connection ends. That may be long
// after handle returns: a relay carries on without this goroutine.
func (s *Server) handle(raw net.Conn) {
	c := newConn(s, raw)
	c.serve(s.ctx)
}

// connDone releases what Serve took for a connection.
func (s *Server) connDone() {
	s.release()
	s.active.Add(-1)
	s.conns.Done()
}

// Shutdown stops accepting, waits for live connections to finish until ctx
// is done, then closes the rest and waits for them to go. It returns
// ctx.Err() if connections had to be cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	select {
	case <-s.closing:
	default:
		close(s.closing)
		if n := s.active.Load(); n > 0 {
			s.Logger.Info("draining connections", "listener", s.Name, "connections", n)
		}
	}
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancel()
		<-done
	}
	s.cancel()
	// The counts of suppressed lines are the last words of the listener,
	// logged before Shutdown returns: left to the context's AfterFunc,
	// they raced the process's exit and were often lost.
	s.failLogs.stop()
	s.limitLogs.stop()
	return err
}
