package l4

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Reasons a connection is refused by a per-client limit.
const (
	reasonIPConns = "max_connections_per_ip"
	reasonIPRate  = "rate_per_ip"
)

// DefaultIPv6Prefix is how many leading bits of an IPv6 address make one
// client for the per-client limits: a /64 is what one subscriber or host
// usually gets, and can change the rest at will.
const DefaultIPv6Prefix = 64

// maxTrackedClients bounds the per-client table. Past it, clients with
// nothing open whose rate budget has refilled are dropped; a client that
// finds the table full of busy ones is let in untracked, so that an
// attacker with very many addresses costs bounded memory, not the other
// clients their service.
const maxTrackedClients = 1 << 16

// ipLimits bounds, per client address, the connections a listener holds
// at once and how fast it accepts new ones. One is shared by every
// configuration's server of a listener, like connLimit, so that a reload
// does not reset the counts; setLimits applies a reload's values.
type ipLimits struct {
	mu       sync.Mutex
	maxConns int        // 0: no limit
	rate     rate.Limit // 0: no limit
	burst    int
	v6Bits   int
	clients  map[netip.Prefix]*ipState
	swept    time.Time // last sweep of idle clients
}

type ipState struct {
	conns int
	lim   *rate.Limiter // nil without a rate limit
	last  time.Time     // last connection admitted or ended
}

func newIPLimits() *ipLimits {
	return &ipLimits{clients: make(map[netip.Prefix]*ipState)}
}

// setLimits sets the limits; a changed rate applies to clients as they
// come back.
func (l *ipLimits) setLimits(maxConns int, perSecond float64, burst, v6Bits int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := rate.Limit(perSecond)
	if r != l.rate || burst != l.burst {
		for _, st := range l.clients {
			st.lim = nil
		}
	}
	l.maxConns, l.rate, l.burst, l.v6Bits = maxConns, r, burst, v6Bits
}

// clientKey is the client of addr for the limits: the address itself for
// IPv4, its prefix for IPv6; ok is false for addresses without an IP
// (unix sockets).
func (l *ipLimits) clientKey(addr net.Addr) (netip.Prefix, bool) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}, false
	}
	ip := ta.AddrPort().Addr().Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = l.v6Bits
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

// admit takes a connection of the client key, now, or says which limit
// refuses it. A connection admitted must be given back with release.
func (l *ipLimits) admit(key netip.Prefix, now time.Time) (ok bool, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		l.sweepLocked(now)
	}
	st := l.clients[key]
	if st == nil {
		if len(l.clients) >= maxTrackedClients {
			l.sweepLocked(now)
		}
		if len(l.clients) >= maxTrackedClients {
			return true, "" // untracked; see maxTrackedClients
		}
		st = &ipState{}
		l.clients[key] = st
	}
	if l.maxConns > 0 && st.conns >= l.maxConns {
		return false, reasonIPConns
	}
	if l.rate > 0 {
		if st.lim == nil {
			st.lim = rate.NewLimiter(l.rate, l.burst)
		}
		if !st.lim.AllowN(now, 1) {
			return false, reasonIPRate
		}
	}
	st.conns++
	st.last = now
	return true, ""
}

// hold counts a connection of the client key that is there already (moved
// from an old process), whatever the limits say; give it back with
// release.
func (l *ipLimits) hold(key netip.Prefix, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.clients[key]
	if st == nil {
		st = &ipState{}
		l.clients[key] = st
	}
	st.conns++
	st.last = now
}

// release gives back a connection admit took.
func (l *ipLimits) release(key netip.Prefix, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.clients[key]; st != nil && st.conns > 0 {
		st.conns--
		st.last = now
		if st.conns == 0 && l.rate == 0 {
			delete(l.clients, key)
		}
	}
}

// sweepLocked drops the clients that hold nothing and whose rate budget
// has refilled: forgetting them changes nothing.
func (l *ipLimits) sweepLocked(now time.Time) {
	l.swept = now
	refill := time.Duration(0)
	if l.rate > 0 {
		refill = time.Duration(float64(l.burst) / float64(l.rate) * float64(time.Second))
	}
	for k, st := range l.clients {
		if st.conns == 0 && now.Sub(st.last) >= refill {
			delete(l.clients, k)
		}
	}
}

// tracked reports how many clients the table holds (tests).
func (l *ipLimits) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// limitLogs says how many connections each limit (per client, or
// max_handshakes) refused, at most once a second per limit: a client
// hammering a limit is what the limit is for, and must not also fill the
// log. The zero value is ready.
type limitLogs struct{ reasonLogs }

// refused notes a connection from client refused by the limit reason.
func (f *limitLogs) refused(s *Server, reason string, client net.Addr, now time.Time) {
	r := f.get(s, reason, func() *rateLog {
		return newRateLog(time.Second, 1, func(n int64) {
			s.Logger.Warn("limit refused connections", "listener", s.Name, "limit", reason, "refused", n)
		})
	})
	if ok, n := r.allow(now); ok {
		s.Logger.Warn("limit refused connections", "listener", s.Name, "limit", reason,
			"refused", n+1, "client", client.String())
	}
}

// ErrClientLimit is the error of a connection a per-client limit refused.
var ErrClientLimit = errors.New("l4: per-client limit reached")

// admit applies the listener's per-client limits to the connection, whose
// client address is known (from PROXY, if any). A refusal is logged by
// limitLogs, and the access line is at debug.
func (c *conn) admit() error {
	l := c.srv.perIP
	if l == nil {
		return nil
	}
	key, ok := l.clientKey(c.client)
	if !ok {
		return nil
	}
	now := time.Now()
	ok, reason := l.admit(key, now)
	if !ok {
		c.reason = reason
		c.srv.limitLogs.refused(c.srv, reason, c.client, now)
		return fmt.Errorf("%w: %s", ErrClientLimit, reason)
	}
	c.ipKey, c.ipHeld = key, true
	return nil
}

// clientLimits returns the per-client table of the listener called name,
// the one its servers in earlier configurations count in too. Callers
// hold p.mu, or own p (New).
func (p *Proxy) clientLimits(name string) *ipLimits {
	if p.perIP == nil {
		p.perIP = make(map[string]*ipLimits)
	}
	l := p.perIP[name]
	if l == nil {
		l = newIPLimits()
		p.perIP[name] = l
	}
	return l
}

// applyLimits puts the configuration's per-client limits and its
// max_handshakes to work, once it is the one that serves.
func (g *generation) applyLimits(handshakes *connLimit) {
	handshakes.setMax(g.cfg.MaxHandshakes)
	for i, s := range g.servers {
		if s.perIP != nil {
			lc := &g.cfg.Listeners[i]
			s.perIP.setLimits(lc.MaxConnectionsPerIP, lc.RatePerIP, lc.rateBurst(), lc.ipv6Prefix())
		}
	}
}
