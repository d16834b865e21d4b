package l4

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sluice/splice"
	"sluice/tlsterm"
)

// Proxy is a whole configuration put to work: one Server per listener,
// sharing upstream pools, connection ids and buffers. Reload puts a new
// configuration to work in its place, keeping the listening sockets; the
// servers of the old one stop accepting but keep their connections, each
// of which lives with the configuration it was accepted under.
type Proxy struct {
	logger  *slog.Logger
	pipes   *splice.PipePool
	buffers *splice.BufferPool
	ids     *ConnIDs
	metrics *Metrics
	view    atomic.Pointer[scrapeView] // for WriteMetrics; see publish
	// perIP holds each listener's per-client counts, by listener name,
	// across reloads (see clientLimits).
	perIP map[string]*ipLimits
	// handshakes bounds the handshakes in progress (max_handshakes),
	// across reloads; its limit is the running configuration's.
	handshakes *connLimit
	turns      *hsTurns // the handshakes' turns to compute
	// tickets holds the session ticket keys of every listener of every
	// configuration, so that sessions resume across reloads.
	tickets *tls.Config

	mu      sync.Mutex // serialises Listen, Reload and Shutdown
	gen     *generation
	retired []*Server      // earlier configurations' servers still holding connections
	parker  *splice.Parker // started by Listen, closed by Shutdown
	fatal   chan error     // a listener failed for good
	stopped chan struct{}  // closed by Shutdown
	served  bool
	forgot  chan<- *Server // tests: told of each retired server forgotten
	watch   fileWatch      // started by Serve (watch.go)
	// inherited are sockets handed over by an old process, by address
	// (Inherit), for Listen.
	inherited map[string]*os.File

	// kernelTLS is what the kernel's TLS can take, probed the first time
	// a listener wants it.
	ktlsOnce  sync.Once
	kernelTLS *tlsterm.KernelTLS
}

// kernel probes the kernel's TLS once, and says once what it found.
func (p *Proxy) kernel() *tlsterm.KernelTLS {
	p.ktlsOnce.Do(func() {
		p.kernelTLS = tlsterm.ProbeKernel()
		if p.kernelTLS.Err != nil {
			p.logger.Info("kernel tls unavailable: terminated connections keep their record layer in userspace", "error", p.kernelTLS.Err.Error())
			return
		}
		p.logger.Info("kernel tls available", "ciphers", p.kernelTLS.String())
	})
	return p.kernelTLS
}

// generation is one configuration put to work.
type generation struct {
	cfg       *Config
	servers   []*Server      // by listener index
	listeners []net.Listener // by listener index, once bound
	stores    []*tlsterm.Store
	storePath []string
	// storeListener names the listener of each store, for metrics.
	storeListener []string
	upstreams     map[string]*Upstream
	// ticketKeys are the session ticket key files in use, by name; a
	// reload keeps each one the new configuration still names, and puts
	// what it read of them (newKeys) to work once it goes through.
	ticketKeys map[string]*tlsterm.TicketKeys
	newKeys    map[*tlsterm.TicketKeys]*tlsterm.TicketKeySet
}

// New builds a Proxy from a validated configuration: it reads every
// certificate, key and CA file, so a configuration New accepts can be
// served. Errors are *FieldErrors naming the key at fault, joined.
func New(cfg *Config, logger *slog.Logger) (*Proxy, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		logger:     logger,
		pipes:      &splice.PipePool{},
		buffers:    &splice.BufferPool{},
		ids:        NewConnIDs(),
		metrics:    NewMetrics(),
		handshakes: newConnLimit(0),
		turns:      newHSTurns(0),
		tickets:    &tls.Config{},
		fatal:      make(chan error, 1),
		stopped:    make(chan struct{}),
	}
	gen, err := p.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	gen.applyLimits(p.handshakes)
	p.gen = gen
	p.publish()
	return p, nil
}

// build puts cfg to work, short of binding its listeners. Servers of
// upstreams that prev has too (by upstream name and address) are prev's,
// with their passive health state and their count of active connections.
func (p *Proxy) build(cfg *Config, prev *generation) (*generation, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := p.logger
	g := &generation{cfg: cfg, upstreams: make(map[string]*Upstream, len(cfg.Upstreams))}
	limits := KernelBufferLimits()
	for i, uc := range cfg.Upstreams {
		u := &Upstream{
			meter:          p.metrics.upstream(uc.Name),
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
		for _, addr := range uc.Servers {
			b := prev.backend(uc.Name, addr)
			if b.meter == nil { // a new server; a kept one has its meter
				b.meter = p.metrics.server(uc.Name, addr)
				b.meter.backend.Store(b)
			}
			u.Servers = append(u.Servers, b)
		}
		g.upstreams[uc.Name] = u
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
			Buffers:          p.buffers,
			Pipes:            p.pipes,
			Parker:           p.parker,
			IDs:              p.ids,
			LogOpen:          lc.LogOpen,
			MaxLifetime:      lc.MaxConnectionLifetime.Duration,
			hsQueue:          cfg.HandshakeQueueTimeout.or(DefaultHandshakeQueueTimeout),
			meter:            p.metrics.listener(name),
		}
		if cfg.MaxHandshakes > 0 {
			s.handshakes = p.handshakes
		}
		s.turns = p.turns
		if lc.MaxConnectionsPerIP > 0 || lc.RatePerIP > 0 {
			// The values apply when the configuration does (applyLimits).
			s.perIP = p.clientLimits(name)
		}
		for _, t := range lc.TrustedProxies {
			pfx, _ := parsePrefix(t) // checked by Validate
			s.TrustedProxies = append(s.TrustedProxies, pfx)
		}
		s.Routes = lc.routes(name, g.upstreams)
		if lc.TLS != nil {
			s.ALPN = lc.TLS.ALPN
			tickets := p.tickets
			if file := cfg.TicketKeysFile(lc.TLS); file != "" {
				tk, err := g.ticketKeysFor(file, prev, logger)
				if err != nil {
					if lc.TLS.SessionTicketKeys != "" {
						es.wrap(path+".tls.session_ticket_keys", err)
					} else {
						es.wrap("session_ticket_keys", err)
					}
					continue
				}
				tickets = tk.Config()
			}
			tlsCfg, store, err := buildTLS(lc.TLS, path+".tls", s.alpnFor, tickets, logger.With("listener", name))
			if err != nil {
				es = append(es, err)
				continue
			}
			s.TLSConfig = tlsCfg
			if lc.TLS.KTLS != KTLSOff {
				kt := p.kernel()
				s.ktls = kt
				if kt.Err == nil {
					s.keyLogTLS = tlsterm.WithKeyLog(tlsCfg)
				} else if lc.TLS.KTLS == KTLSRequire {
					es.add(path+".tls.ktls", "%q, and this kernel cannot: %v", KTLSRequire, kt.Err)
					continue
				}
			}
			g.stores = append(g.stores, store)
			g.storePath = append(g.storePath, path+".tls")
			g.storeListener = append(g.storeListener, name)
			warnExpiring(logger, name, path+".tls", store, time.Now())
			warnUncoveredSNI(logger, name, path, lc.Routes, store)
		}
		warnBufferCaps(logger, path, lc.socketOptions(), limits)
		g.servers = append(g.servers, s)
	}
	if err := errors.Join(es...); err != nil {
		return nil, err
	}
	return g, nil
}

// ticketKeysFor returns the keys of file for g: those g has already, else
// prev's, whose file it reads again for useTicketKeys to put to work if
// the reload goes through, else the file's, loaded.
func (g *generation) ticketKeysFor(file string, prev *generation, logger *slog.Logger) (*tlsterm.TicketKeys, error) {
	if tk := g.ticketKeys[file]; tk != nil {
		return tk, nil
	}
	var tk *tlsterm.TicketKeys
	if prev != nil && prev.ticketKeys[file] != nil {
		tk = prev.ticketKeys[file]
		set, err := tk.Read()
		if err != nil {
			return nil, err
		}
		if g.newKeys == nil {
			g.newKeys = make(map[*tlsterm.TicketKeys]*tlsterm.TicketKeySet)
		}
		g.newKeys[tk] = set
	} else {
		var err error
		if tk, err = tlsterm.LoadTicketKeys(file); err != nil {
			return nil, err
		}
		logTicketKeys(logger, "session ticket keys loaded", tk)
	}
	if g.ticketKeys == nil {
		g.ticketKeys = make(map[string]*tlsterm.TicketKeys)
	}
	g.ticketKeys[file] = tk
	return tk, nil
}

// useTicketKeys puts to work the key files a reload read again.
func (g *generation) useTicketKeys(logger *slog.Logger) {
	for tk, set := range g.newKeys {
		if tk.Use(set) {
			logTicketKeys(logger, "session ticket keys changed", tk)
		}
	}
	g.newKeys = nil
}

// logTicketKeys says which keys are in use, by ID: instances of a fleet
// that log the same encrypting ID resume each other's sessions.
func logTicketKeys(logger *slog.Logger, msg string, tk *tlsterm.TicketKeys) {
	ids := tk.IDs()
	logger.Info(msg, "file", tk.File(), "keys", len(ids), "encrypting", ids[0], "ids", strings.Join(ids, ","))
	if tk.WorldReadable() {
		logger.Warn("session ticket key file is readable by every user: whoever reads it can decrypt the sessions its keys resume; chmod o-r it",
			"file", tk.File())
	}
}

// backend returns the server addr of upstream name in g, or a new one.
func (g *generation) backend(name, addr string) *Backend {
	if g != nil {
		if u := g.upstreams[name]; u != nil {
			for _, b := range u.Servers {
				if b.Addr == addr {
					return b
				}
			}
		}
	}
	return NewBackend(addr)
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

// Listen binds every listener of the configuration, and starts the
// Parker that holds idle relays.
func (p *Proxy) Listen(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.gen
	for i, lc := range g.cfg.Listeners {
		var ln net.Listener
		var err error
		if f := p.inherited[lc.Address]; f != nil {
			delete(p.inherited, lc.Address)
			ln, err = inheritedListener(f, lc.socketOptions())
		} else {
			ln, err = listen(ctx, lc.Address, lc.ReusePort, lc.socketOptions())
		}
		if err != nil {
			for _, l := range g.listeners {
				l.Close()
			}
			g.listeners = nil
			return &FieldError{Path: fmt.Sprintf("listener[%d].address", i), Err: err}
		}
		g.listeners = append(g.listeners, ln)
	}
	for _, f := range p.inherited {
		f.Close() // an address the configuration no longer has
	}
	p.inherited = nil
	if err := p.turns.startProbe(); errors.Is(err, errNoProbe) {
		p.logger.Debug("new handshakes will start whatever the connections open wait for", "error", err)
	} else if err != nil {
		p.logger.Warn("new handshakes will start whatever the connections open wait for", "error", err)
	}
	parker, err := splice.NewParker()
	if err != nil {
		// Relays work without one; idle ones keep their goroutines.
		p.logger.Warn("idle connections will not be parked", "error", err)
		return nil
	}
	p.parker = parker
	for _, s := range g.servers {
		s.Parker = parker
	}
	p.publish()
	return nil
}

// Addrs returns the listening addresses, in configuration order, after
// Listen.
func (p *Proxy) Addrs() []net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]net.Addr, len(p.gen.listeners))
	for i, ln := range p.gen.listeners {
		out[i] = ln.Addr()
	}
	return out
}

// Serve serves every listener opened by Listen, and those later reloads
// open, until Shutdown. It returns nil once Shutdown is done, or the first
// listener-fatal error as soon as it happens (the other listeners keep
// serving until the caller shuts them down).
func (p *Proxy) Serve() error {
	p.mu.Lock()
	select {
	case <-p.stopped: // shut down before it served
		p.mu.Unlock()
		return nil
	default:
	}
	p.served = true
	p.startWatching()
	for i, s := range p.gen.servers {
		p.serve(s, p.gen.listeners[i])
	}
	p.mu.Unlock()
	select {
	case err := <-p.fatal:
		return err
	case <-p.stopped:
		return nil
	}
}

// serve runs s on ln in a goroutine of its own, reporting a failure for
// good on p.fatal; a Serve ended by Shutdown or by a reload is no failure.
func (p *Proxy) serve(s *Server, ln net.Listener) {
	p.logger.Info("listening", "listener", s.Name, "address", ln.Addr().String(), "tls", s.TLSConfig != nil)
	go func() {
		err := s.Serve(ln)
		if err == nil || errors.Is(err, ErrServerClosed) || errors.Is(err, errRetired) {
			return
		}
		select {
		case p.fatal <- fmt.Errorf("listener %s: %w", s.Name, err):
		default:
		}
	}()
}

// Shutdown stops every listener and drains connections, those of earlier
// configurations too, until ctx is done, then closes what is left. It
// returns ctx.Err() if any connection had to be cut.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.stopWatching()
	p.mu.Lock()
	defer p.mu.Unlock()
	servers := append(slices.Clone(p.gen.servers), p.retired...)
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Shutdown(ctx)
		}()
	}
	wg.Wait()
	// Listeners bound but never served (Serve not called) are closed too.
	for _, ln := range p.gen.listeners {
		ln.Close()
	}
	p.turns.stopProbe()
	// Every relay has ended: nothing is parked any more.
	if p.parker != nil {
		p.parker.Close()
	}
	p.pipes.Close()
	select {
	case <-p.stopped:
	default:
		close(p.stopped)
	}
	return errors.Join(errs...)
}

// ReloadCertificates reads every listener's certificates and client CA file
// again. A listener whose files fail keeps what it had; the error names the
// keys at fault.
func (p *Proxy) ReloadCertificates() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var es errs
	for i, st := range p.gen.stores {
		es.wrapCertErrors(p.gen.storePath[i], st.Reload())
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
func buildTLS(tc *TLSConfig, path string, alpnFor func(*tls.ClientHelloInfo) []string, tickets *tls.Config, logger *slog.Logger) (*tls.Config, *tlsterm.Store, error) {
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
	o.TicketKeys = tickets
	o.DynamicRecordSizing = tc.DynamicRecordSizing
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
