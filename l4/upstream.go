package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Dialer opens connections to backends; *net.Dialer satisfies it.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Balance picks the order in which an upstream's servers are tried.
type Balance int

// The balancing methods.
const (
	RoundRobin Balance = iota // rotate through the servers
	LeastConn                 // fewest active connections first, rotating among ties
)

// Upstream is a pool of backend servers. Dial tries them in the balancing
// order, each at most once, and takes a server out of rotation for
// FailTimeout after MaxFails failed dials within FailTimeout (nginx's
// passive health check). When every server is out, they are all tried
// anyway, least recently failed first, rather than refusing the client.
type Upstream struct {
	Name           string
	Servers        []*Backend
	Balance        Balance
	ConnectTimeout time.Duration // zero: DefaultConnectTimeout
	// SendProxy is the PROXY protocol version sent to backends: 0 (none),
	// 1 or 2.
	SendProxy int
	// Protocols are the application protocols (ALPN names) the servers
	// speak; a terminating listener offers a client only protocols that
	// the route it can take will carry (see Server.ALPN).
	Protocols   []string
	MaxFails    int           // zero: never take a server out
	FailTimeout time.Duration // zero: DefaultFailTimeout
	// Dialer opens the connections; nil means one that applies Socket.
	Dialer Dialer
	// Socket holds the options of dialled sockets. They apply only when
	// Dialer is nil: an injected Dialer sets its own.
	Socket SocketOptions
	Logger *slog.Logger // nil: discard

	next  atomic.Uint64  // round-robin cursor
	meter *upstreamMeter // nil: not measured
	// keepAliveAfter replaces the package's keepAliveAfter (see
	// keepAliveLater); for tests.
	keepAliveAfter time.Duration
}

// Backend is one backend address of an Upstream.
type Backend struct {
	Addr string // as configured: "host:port" or "unix:/path"

	network, address string
	active           atomic.Int64
	meter            *serverMeter // nil: not measured

	mu          sync.Mutex
	fails       int
	windowStart time.Time
	downUntil   time.Time
}

// NewBackend parses a configured server address.
func NewBackend(addr string) *Backend {
	s := &Backend{Addr: addr, network: "tcp", address: addr}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		s.network, s.address = "unix", path
	}
	return s
}

// Active returns the number of relays open to this server.
func (s *Backend) Active() int64 { return s.active.Load() }

// done records the end of a relay opened by Upstream.Dial.
func (s *Backend) done() { s.active.Add(-1) }

func (s *Backend) available(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !now.Before(s.downUntil)
}

// failed records a failed dial and reports whether it took the server out.
func (s *Backend) failed(now time.Time, maxFails int, window time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.windowStart) > window {
		s.fails, s.windowStart = 0, now
	}
	s.fails++
	if maxFails > 0 && s.fails >= maxFails {
		s.fails = 0
		s.downUntil = now.Add(window)
		return true
	}
	return false
}

func (s *Backend) succeeded() {
	s.mu.Lock()
	s.fails = 0
	s.downUntil = time.Time{}
	s.mu.Unlock()
}

func (u *Upstream) connectTimeout() time.Duration {
	if u.ConnectTimeout <= 0 {
		return DefaultConnectTimeout
	}
	return u.ConnectTimeout
}

func (u *Upstream) failTimeout() time.Duration {
	if u.FailTimeout <= 0 {
		return DefaultFailTimeout
	}
	return u.FailTimeout
}

func (u *Upstream) dialer() Dialer {
	if u.Dialer == nil {
		return u.Socket.dialer()
	}
	return u.Dialer
}

func (u *Upstream) logger() *slog.Logger {
	if u.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return u.Logger
}

// order returns the servers in the order Dial should try them.
func (u *Upstream) order(now time.Time) []*Backend {
	n := len(u.Servers)
	start := int(u.next.Add(1)-1) % n
	up := make([]*Backend, 0, n)
	var down []*Backend
	for i := range n {
		s := u.Servers[(start+i)%n]
		if s.available(now) {
			up = append(up, s)
		} else {
			down = append(down, s)
		}
	}
	if u.Balance == LeastConn {
		// Stable, so the rotation breaks ties.
		slices.SortStableFunc(up, func(a, b *Backend) int { return int(a.active.Load() - b.active.Load()) })
	}
	slices.SortStableFunc(down, func(a, b *Backend) int {
		a.mu.Lock()
		da := a.downUntil
		a.mu.Unlock()
		b.mu.Lock()
		db := b.downUntil
		b.mu.Unlock()
		return da.Compare(db)
	})
	return append(up, down...)
}

// Dial connects to one of the servers. The caller must call release on the
// returned server when the connection is finished with. The connection has
// no keepalive yet: the caller arranges it (keepAliveLater), so that a
// short connection is spared it.
func (u *Upstream) Dial(ctx context.Context) (net.Conn, *Backend, error) {
	if len(u.Servers) == 0 {
		return nil, nil, fmt.Errorf("upstream %s: no servers", u.Name)
	}
	var errs []error
	for _, s := range u.order(time.Now()) {
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, u.connectTimeout())
		c, err := u.dialer().DialContext(dctx, s.network, s.address)
		cancel()
		if err == nil {
			u.meter.connected(time.Since(start))
			s.meter.connected()
			s.succeeded()
			s.active.Add(1)
			return c, s, nil
		}
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("upstream %s: %w", u.Name, ctx.Err())
		}
		errs = append(errs, fmt.Errorf("dial %s: %w", s.Addr, err))
		if outOfDescriptors(err) {
			// Out of descriptors here: not the server's fault, and every
			// other server would fail the same way.
			s.meter.failed(dialNoFDs, false)
			break
		}
		down := s.failed(time.Now(), u.MaxFails, u.failTimeout())
		s.meter.failed(dialReason(err), down)
		if down {
			u.logger().Warn("upstream server marked down", "upstream", u.Name, "server", s.Addr,
				"for", u.failTimeout(), "error", err)
		}
	}
	return nil, nil, fmt.Errorf("upstream %s: all servers failed: %w", u.Name, semicolonErrors(errs))
}

// dialReason sorts a failed dial for sluice_upstream_connect_errors_total.
func dialReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return dialTimeout
	case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT):
		// ENOENT: a unix socket that is not there, as good as refused.
		return dialRefused
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return dialUnreachable
	case errors.Is(err, syscall.ECONNRESET):
		return dialReset
	}
	return dialError
}

// outOfDescriptors reports whether err says this process or the system
// has no file descriptor left.
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// semicolonErrors is errors.Join on one line, so a log line stays one
// line.
type semicolonErrors []error

func (e semicolonErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e semicolonErrors) Unwrap() []error { return e }
