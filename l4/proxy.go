package l4

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"sluice/splice"
	"sluice/tlsterm"
)

// Proxy is a whole configuration put to work: one Server per listener,
// sharing upstream pools, connection ids and buffers.
type Proxy struct {
	cfg       *Config
	logger    *slog.Logger
	servers   []*Server
	listeners []net.Listener
	stores    []*tlsterm.Store
	storePath []string
	pipes     *splice.PipePool
	parker    *splice.Parker // started by Listen, closed by Shutdown
}

// New builds a Proxy from a validated configuration: it reads every
// certificate, key and CA file, so a configuration New accepts can be
// served. Errors are *FieldErrors naming the key at fault, joined.
func New(cfg *Config, logger *slog.Logger) (*Proxy, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, logger: logger, pipes: &splice.PipePool{}}
	ids := NewConnIDs()
	buffers := &splice.BufferPool{}

	limits := KernelBufferLimits()
	upstreams := make(map[string]*Upstream, len(cfg.Upstreams))
	for i, uc := range cfg.Upstreams {
		u := &Upstream{
			Name:           uc.Name,
			ConnectTimeout: uc.ConnectTimeout.Duration,
			FailTimeout:    uc.FailTimeout.Duration,
			MaxFails:       DefaultMaxFails,
			Socket:         uc.socketOptions(),
			Logger:         logger,
		}
		warnBufferCaps(logger, fmt.Sprintf("upstream[%d]", i), u.Socket, limits)
		if uc.MaxFails != nil {
			u.MaxFails = *uc.MaxFails
		}
		if uc.Balance == "least_conn" {
			u.Balance = LeastConn
		}
		switch uc.SendProxy {
		case "v1":
			u.SendProxy = 1
		case "v2":
			u.SendProxy = 2
		}
		u.Protocols = uc.Protocols
		for _, s := range uc.Servers {
			u.Servers = append(u.Servers, NewBackend(s))
		}
		upstreams[uc.Name] = u
	}

	var es errs
	for i, lc := range cfg.Listeners {
		path := fmt.Sprintf("listener[%d]", i)
		name := lc.displayName()
		s := &Server{
			Name:             name,
			AcceptProxy:      lc.AcceptProxy,
			ProxyTimeout:     lc.ProxyTimeout.Duration,
			HandshakeTimeout: lc.HandshakeTimeout.Duration,
			IdleTimeout:      lc.IdleTimeout.Duration,
			HalfCloseTimeout: lc.HalfCloseTimeout.Duration,
			MaxConns:         lc.MaxConnections,
			Logger:           logger,
			Buffers:          buffers,
			Pipes:            p.pipes,
			IDs:              ids,
		}
		for _, t := range lc.TrustedProxies {
			pfx, _ := parsePrefix(t) // checked by Validate
			s.TrustedProxies = append(s.TrustedProxies, pfx)
		}
		s.Routes = lc.routes(name, upstreams)
		if lc.TLS != nil {
			s.ALPN = lc.TLS.ALPN
			cfg, store, err := buildTLS(lc.TLS, path+".tls", s.alpnFor, logger.With("listener", name))
			if err != nil {
				es = append(es, err)
				continue
			}
			s.TLSConfig = cfg
			p.stores = append(p.stores, store)
			p.storePath = append(p.storePath, path+".tls")
			warnUncoveredSNI(logger, name, path, lc.Routes, store)
		}
		warnBufferCaps(logger, path, lc.socketOptions(), limits)
		p.servers = append(p.servers, s)
	}
	if err := errors.Join(es...); err != nil {
		return nil, err
	}
	return p, nil
}

// warnUncoveredSNI warns about routed server names no certificate of the
// listener covers: clients asking for them get the default certificate and,
// unless it happens to be valid for them, refuse it. Not an error: an
// operator may mean it (a default certificate with many names, say).
func warnUncoveredSNI(logger *slog.Logger, listener, path string, routes []RouteConfig, store *tlsterm.Store) {
	if store.SelfSigned() {
		return
	}
	for j, rc := range routes {
		for k, sni := range rc.SNI {
			if !store.Covers(sni) {
				logger.Warn("no certificate covers a routed server name; clients asking for it get the default certificate",
					"listener", listener, "key", fmt.Sprintf("%s.route[%d].sni[%d]", path, j, k), "sni", sni)
			}
		}
	}
}

// socketOptions returns the options of the listener's sockets. Unless
// deferred is set, TCP_DEFER_ACCEPT is on when the client speaks first
// (TLS or a PROXY header), for as long as sluice itself waits for those
// first bytes.
func (lc *ListenerConfig) socketOptions() SocketOptions {
	o := lc.SocketConfig.options()
	deferred := lc.TLS != nil || lc.AcceptProxy
	if lc.Deferred != nil {
		deferred = *lc.Deferred
	}
	if deferred {
		o.DeferAccept = lc.HandshakeTimeout.or(DefaultHandshakeTimeout)
		if lc.AcceptProxy {
			o.DeferAccept = lc.ProxyTimeout.or(DefaultProxyTimeout)
		}
	}
	return o
}

// socketOptions returns the options of the upstream's dialled sockets.
func (uc *UpstreamConfig) socketOptions() SocketOptions {
	return uc.SocketConfig.options()
}

// options maps the keys to SocketOptions: unset keys are zero (the
// defaults), and keepalive = "0s" is a negative KeepAlive (off).
func (sc SocketConfig) options() SocketOptions {
	o := SocketOptions{
		Nagle:             sc.NoDelay != nil && !*sc.NoDelay,
		KeepAliveInterval: sc.KeepAliveInterval.Duration,
		KeepAliveCount:    sc.KeepAliveCount,
		RcvBuf:            int(sc.RcvBuf),
		SndBuf:            int(sc.SndBuf),
	}
	if sc.KeepAlive != nil {
		o.KeepAlive = sc.KeepAlive.Duration
		if o.KeepAlive == 0 {
			o.KeepAlive = -1
		}
	}
	return o
}

// Listen opens every listener's socket, so that an address in use or a
// missing permission is reported before anything is served. On error, the
// sockets already opened are closed.
func (p *Proxy) Listen(ctx context.Context) error {
	for i, lc := range p.cfg.Listeners {
		ln, err := listen(ctx, lc.Address, lc.ReusePort, lc.socketOptions())
		if err != nil {
			for _, l := range p.listeners {
				l.Close()
			}
			p.listeners = nil
			return &FieldError{Path: fmt.Sprintf("listener[%d].address", i), Err: err}
		}
		p.listeners = append(p.listeners, ln)
	}
	parker, err := splice.NewParker()
	if err != nil {
		// Relays work without one; idle ones keep their goroutines.
		p.logger.Warn("idle connections will not be parked", "error", err)
		return nil
	}
	p.parker = parker
	for _, s := range p.servers {
		s.Parker = parker
	}
	return nil
}

// Addrs returns the listening addresses, in configuration order, after
// Listen.
func (p *Proxy) Addrs() []net.Addr {
	out := make([]net.Addr, len(p.listeners))
	for i, ln := range p.listeners {
		out[i] = ln.Addr()
	}
	return out
}

// Serve serves every listener opened by Listen until Shutdown. It returns
// nil once all have stopped after Shutdown, or the first listener-fatal
// error as soon as it happens (the other listeners keep serving until the
// caller shuts them down).
func (p *Proxy) Serve() error {
	errc := make(chan error, len(p.servers))
	for i, s := range p.servers {
		go func() {
			p.logger.Info("listening", "listener", s.Name, "address", p.listeners[i].Addr().String(), "tls", s.TLSConfig != nil)
			err := s.Serve(p.listeners[i])
			if errors.Is(err, ErrServerClosed) {
				err = nil
			} else if err != nil {
				err = fmt.Errorf("listener %s: %w", s.Name, err)
			}
			errc <- err
		}()
	}
	for range p.servers {
		if err := <-errc; err != nil {
			return err
		}
	}
	return nil
}

// Shutdown stops every listener and drains connections until ctx is done,
// then closes what is left. It returns ctx.Err() if any connection had to be
// cut.
func (p *Proxy) Shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(p.servers))
	for i, s := range p.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Shutdown(ctx)
		}()
	}
	wg.Wait()
	// Every relay has ended: nothing is parked any more.
	if p.parker != nil {
		p.parker.Close()
	}
	p.pipes.Close()
	return errors.Join(errs...)
}

// ReloadCertificates reads every listener's certificates and client CA file
// again. A listener whose files fail keeps what it had; the error names the
// keys at fault.
func (p *Proxy) ReloadCertificates() error {
	var es errs
	for i, st := range p.stores {
		es.wrapCertErrors(p.storePath[i], st.Reload())
	}
	return errors.Join(es...)
}

// displayName is the listener's name in logs: its name, else its address.
func (lc *ListenerConfig) displayName() string {
	if lc.Name == "" {
		return lc.Address
	}
	return lc.Name
}

// routes builds the listener's routes, named after the listener where
// they have no name of their own.
func (lc *ListenerConfig) routes(name string, upstreams map[string]*Upstream) []Route {
	routes := make([]Route, 0, len(lc.Routes))
	for j, rc := range lc.Routes {
		r := Route{
			Name:        rc.Name,
			ALPN:        rc.ALPN,
			ClientCN:    rc.ClientCN,
			Upstream:    upstreams[rc.Upstream],
			IdleTimeout: rc.IdleTimeout.Duration,
			Passthrough: rc.Mode == "passthrough",
			ServerFirst: rc.ServerFirst,
		}
		if r.Name == "" {
			r.Name = fmt.Sprintf("%s#%d", name, j)
		}
		for _, sni := range rc.SNI {
			r.SNI = append(r.SNI, strings.ToLower(sni))
		}
		if rc.WebSocket != nil {
			r.WebSocket = WebSocketNot
			if *rc.WebSocket {
				r.WebSocket = WebSocketOnly
			}
		}
		routes = append(routes, r)
	}
	return routes
}

// buildTLS loads a listener's certificates and CA and makes its *tls.Config;
// alpnFor chooses the protocols offered to each client (tls.alpn is all
// it may offer).
func buildTLS(tc *TLSConfig, path string, alpnFor func(*tls.ClientHelloInfo) []string, logger *slog.Logger) (*tls.Config, *tlsterm.Store, error) {
	var es errs
	var o tlsterm.Options
	if tc.MinVersion != "" {
		o.MinVersion, _ = tlsterm.ParseVersion(tc.MinVersion) // checked by Validate
	}
	for _, s := range tc.CipherSuites {
		id, _ := tlsterm.ParseCipherSuite(s)
		o.CipherSuites = append(o.CipherSuites, id)
	}
	for _, s := range tc.Curves {
		id, _ := tlsterm.ParseCurve(s)
		o.Curves = append(o.Curves, id)
	}
	o.NextProtos = tc.ALPN
	if len(tc.ALPN) > 0 {
		o.NextProtosFor = alpnFor
	}
	o.ClientAuth, _ = tlsterm.ParseClientAuth(tc.ClientAuth)
	o.SessionTicketsDisabled = tc.SessionTickets != nil && !*tc.SessionTickets
	o.SessionTicketLifetime = tc.SessionTicketLifetime.or(DefaultSessionTicketLifetime)
	files := make([]tlsterm.CertFile, len(tc.Certificates))
	for i, c := range tc.Certificates {
		files[i] = tlsterm.CertFile{Cert: c.Cert, Key: c.Key}
	}
	// The store owns the client CA pool too, so that SIGHUP reloads it.
	store, err := tlsterm.NewStore(files, tc.ClientCA, logger)
	es.wrapCertErrors(path, err)
	if len(es) > 0 {
		return nil, nil, errors.Join(es...)
	}
	return tlsterm.NewConfig(store, o), store, nil
}
