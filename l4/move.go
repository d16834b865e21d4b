package l4

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"sluice/splice"
	"sluice/tlsterm"
)

// Moving connections to a new process at a binary upgrade: the old
// process freezes each relay whose sockets carry everything about it
// (plain, passthrough, and terminated with the record layer in the
// kernel), sends the two sockets and what it knows of the connection, and
// the new one relays on from where it stopped. Connections whose TLS
// state lives in crypto/tls cannot move; they drain in the old process.

// MoveTimeout bounds how long a relay may take to stop with nothing in
// flight (a direction blocked writing to a peer that reads nothing cannot
// stop); one that takes longer stays and drains here.
const MoveTimeout = 2 * time.Second

// connState is what a connection carries to the next process.
type connState struct {
	ID       string        `json:"id"`
	Listener string        `json:"listener"`
	Route    string        `json:"route"`
	Upstream string        `json:"upstream"`
	Server   string        `json:"server"`
	Client   string        `json:"client"`
	Local    string        `json:"local"`
	Start    time.Time     `json:"start"`
	Shake    time.Duration `json:"handshake,omitempty"`
	Dial     time.Duration `json:"connect,omitempty"`
	// Pre, In and Out are the bytes moved so far (see conn.pre).
	Pre int64 `json:"pre"`
	In  int64 `json:"in"`
	Out int64 `json:"out"`
	// ClientEnded or BackendEnded: that peer's stream had ended (and the
	// other side was half-closed); only the other direction moves on.
	ClientEnded  splice.End `json:"client_ended,omitempty"`
	BackendEnded splice.End `json:"backend_ended,omitempty"`

	TLS    *tlsterm.Info        `json:"tls,omitempty"`
	Kernel *tlsterm.KernelState `json:"kernel,omitempty"`
	SNI    string               `json:"sni,omitempty"` // passthrough
}

// Mover sends one connection's state and its client and backend sockets
// to the new process and returns nil once that process runs it. An error
// wrapping ErrMoveStopped means the new process can take no more.
type Mover func(state []byte, client, backend syscall.Conn) error

// ErrMoveStopped is wrapped by a Mover's error when moving must stop.
var ErrMoveStopped = errors.New("l4: the new process takes no more connections")

// MoveConns moves every relaying connection that can move to a new
// process through move, one at a time, each frozen only while it moves.
// It returns how many moved and how many stay here to drain.
func (p *Proxy) MoveConns(ctx context.Context, move Mover) (moved, stayed int) {
	var conns []*conn
	for _, lm := range p.metrics.allListeners() {
		conns = lm.relayingConns(conns)
	}
	for i, c := range conns {
		if ctx.Err() != nil {
			return moved, stayed + len(conns) - i
		}
		err := c.move(ctx, move)
		switch {
		case err == nil:
			moved++
		case errors.Is(err, ErrMoveStopped):
			p.logger.Warn("moving connections stopped; the rest drain here", "error", err.Error())
			return moved, stayed + len(conns) - i
		default:
			stayed++
			c.srv.Logger.Debug("connection stays", "conn", c.id, "error", err.Error())
		}
	}
	return moved, stayed
}

// move freezes c's relay, hands it to move, and releases it here or
// thaws it.
func (c *conn) move(ctx context.Context, move Mover) error {
	h := c.relay.Load()
	// A relay linked into its listener a moment before Start returned
	// its handle: wait that moment out.
	for i := 0; h == nil && i < 100 && ctx.Err() == nil; i++ {
		time.Sleep(100 * time.Microsecond)
		h = c.relay.Load()
	}
	if h == nil {
		return splice.ErrNotMovable
	}
	fctx, cancel := context.WithTimeout(ctx, MoveTimeout)
	fr, err := h.Freeze(fctx)
	cancel()
	if err != nil {
		return err
	}
	st := c.state(fr)
	client, ok1 := fr.Client.(syscall.Conn)
	backend, ok2 := fr.Backend.(syscall.Conn)
	var b []byte
	if ok1 && ok2 {
		b, err = json.Marshal(st)
	} else {
		err = splice.ErrNotMovable
	}
	if err == nil {
		// The socket keeps its options in the next process, which
		// would not set them.
		c.keepAlive.now()
		err = move(b, client, backend)
	}
	if err != nil {
		h.Thaw()
		return err
	}
	h.Release()
	return nil
}

// state describes c for the next process; fr is its frozen relay.
func (c *conn) state(fr *splice.Frozen) connState {
	st := connState{ID: c.id, Listener: c.srv.Name, Client: c.client.String(), Local: c.local.String(),
		Start: c.start, Shake: c.handshake, Dial: c.dial, Pre: c.pre, In: fr.In, Out: fr.Out, TLS: c.tls,
		ClientEnded: fr.ClientEnded, BackendEnded: fr.BackendEnded}
	if c.route != nil {
		st.Route, st.Upstream = c.route.Name, c.route.Upstream.Name
	}
	if c.backend != nil {
		st.Server = c.backend.Addr
	}
	if c.hello != nil {
		st.SNI = c.hello.ServerName
	}
	if kc, ok := fr.Client.(*tlsterm.KernelConn); ok {
		ks := kc.State()
		st.Kernel = &ks
	}
	return st
}

// AdoptConn takes over a connection an old process moved here: state as
// MoveConns sent it, and its two sockets. It returns the function that
// starts its relay here, to be called once the old process has let go of
// it; until then, or on error, the sockets are the caller's to close (the
// old process keeps its own copies and relays on).
func (p *Proxy) AdoptConn(state []byte, client, backend net.Conn) (start func(), err error) {
	var st connState
	if err := json.Unmarshal(state, &st); err != nil {
		return nil, fmt.Errorf("adopt connection: %w", err)
	}
	p.mu.Lock()
	gen := p.gen
	p.mu.Unlock()
	var s *Server
	for _, srv := range gen.servers {
		if srv.Name == st.Listener {
			s = srv
		}
	}
	if s == nil {
		return nil, fmt.Errorf("adopt connection %s: no listener %q here", st.ID, st.Listener)
	}
	if st.Kernel != nil {
		tcp, ok := client.(*net.TCPConn)
		if !ok {
			return nil, fmt.Errorf("adopt connection %s: kernel TLS over a %T", st.ID, client)
		}
		kc, err := tlsterm.Adopt(tcp, *st.Kernel)
		if err != nil {
			return nil, fmt.Errorf("adopt connection %s: %w", st.ID, err)
		}
		client = kc
	}
	s.init()
	c := &conn{srv: s, raw: client, id: st.ID, start: st.Start, client: parseAddr(st.Client, client.RemoteAddr()),
		local: parseAddr(st.Local, client.LocalAddr()), tls: st.TLS, handshake: st.Shake, dial: st.Dial, pre: st.Pre,
		adopted: true, clientEnded: st.ClientEnded, backendEnded: st.BackendEnded}
	if st.SNI != "" {
		c.hello = &tlsterm.Hello{ServerName: st.SNI}
	}
	if st.TLS != nil {
		c.layer = layerUserspace
		if kc, ok := client.(*tlsterm.KernelConn); ok {
			c.layer, c.kernel = layerKernel, kc
		}
	}
	c.route = s.routeNamed(st.Route, st.Upstream)
	var server *Backend
	if u := gen.upstreams[st.Upstream]; u != nil {
		for _, b := range u.Servers {
			if b.Addr == st.Server {
				server = b
			}
		}
	}
	c.counts.In.Store(st.In)
	c.counts.Out.Store(st.Out)
	return func() {
		if server != nil {
			server.active.Add(1)
			c.backend = server
		}
		s.limit.takeAnyway()
		if l := s.perIP; l != nil {
			// It counts against its client's limits here as it did there.
			if key, ok := l.clientKey(c.client); ok {
				l.hold(key, time.Now())
				c.ipKey, c.ipHeld = key, true
			}
		}
		s.conns.Add(1)
		s.active.Add(1)
		s.meter.adoptedConn()
		s.Logger.Debug("conn adopted", "conn", c.id, "client", c.client.String(), "listener", s.Name)
		c.startRelay(s.ctx, client, backend)
	}, nil
}

// routeNamed returns the server's route called name, or one made up for a
// connection whose route the configuration here no longer has (it still
// goes to the backend it was connected to).
func (s *Server) routeNamed(name, upstream string) *Route {
	for i := range s.Routes {
		if s.Routes[i].Name == name {
			return &s.Routes[i]
		}
	}
	return &Route{Name: name, Upstream: &Upstream{Name: upstream}}
}

// parseAddr parses a host:port the old process wrote, else keeps def.
func parseAddr(s string, def net.Addr) net.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return def
	}
	return net.TCPAddrFromAddrPort(ap)
}
