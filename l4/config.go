package l4

import (
	"fmt"
	"math"
	"time"
)

// Config is the whole sluice configuration, as decoded from TOML. Field
// tags name the TOML keys; zero values mean the documented defaults.
type Config struct {
	// DrainTimeout bounds a graceful shutdown: live connections get this
	// long to finish before they are closed. Default 30s.
	DrainTimeout Duration `toml:"drain_timeout"`
	// Grace is how long sluice goes on accepting after a stop signal,
	// while /readyz already says 503, so that load balancers polling it
	// stop sending before the listeners close. Default 0.
	Grace Duration `toml:"grace"`
	// MaxHandshakes bounds the TLS handshakes in progress at once in the
	// process, so that a flood of them cannot starve established
	// connections of CPU; a connection past it waits up to
	// HandshakeQueueTimeout for a slot, then is closed. 0: no limit.
	MaxHandshakes         int      `toml:"max_handshakes"`
	HandshakeQueueTimeout Duration `toml:"handshake_queue_timeout"` // default 1s
	// GCPercent is the Go garbage collector's target (GOGC): how far the
	// heap may grow past live memory before a collection. Default
	// DefaultGCPercent; the GOGC environment variable, when set, wins.
	GCPercent *int `toml:"gc_percent"`
	// SessionTicketKeys names a file of session ticket keys (see
	// tlsterm.ParseTicketKeys) for every TLS listener that does not name
	// its own: instances given the same file resume each other's
	// sessions. Empty: keys made and rotated in memory, per process.
	SessionTicketKeys string `toml:"session_ticket_keys"`
	// WatchFiles re-reads certificates, keys, client CAs and ticket key
	// files when they change, checking every WatchInterval (default
	// DefaultWatchInterval). Default true.
	WatchFiles    *bool            `toml:"watch_files"`
	WatchInterval Duration         `toml:"watch_interval"`
	Log           LogConfig        `toml:"log"`
	Admin         AdminConfig      `toml:"admin"`
	Listeners     []ListenerConfig `toml:"listener"`
	Upstreams     []UpstreamConfig `toml:"upstream"`
}

// AdminConfig is the [admin] table: the listener of the metrics, health
// and readiness endpoints (package admin). An empty Address turns it off.
type AdminConfig struct {
	Address string `toml:"address"` // "host:port" or "unix:/path"
	PProf   bool   `toml:"pprof"`   // serve /debug/pprof/ too
}

// LogConfig selects the log format and level.
type LogConfig struct {
	Format string `toml:"format"` // "text" (default) or "json"
	Level  string `toml:"level"`  // "debug", "info" (default), "warn", "error"
}

// ListenerConfig is one [[listener]].
type ListenerConfig struct {
	Name    string `toml:"name"`
	Address string `toml:"address"` // "host:port", "[::]:port" or "unix:/path"
	// ReusePort sets SO_REUSEPORT so several processes can share the port.
	ReusePort bool `toml:"reuse_port"`
	// AcceptProxy requires a PROXY v1 or v2 header on every connection, and
	// accepts connections only from TrustedProxies.
	AcceptProxy    bool     `toml:"accept_proxy"`
	TrustedProxies []string `toml:"trusted_proxies"` // CIDRs or addresses
	// ProxyTimeout bounds reading the PROXY header. Default 5s.
	ProxyTimeout Duration `toml:"proxy_timeout"`
	// HandshakeTimeout bounds the TLS handshake, and separately the peek at
	// the first request head. Default 10s.
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	// IdleTimeout closes a connection after this long without a byte in
	// either direction. Default 10m.
	IdleTimeout Duration `toml:"idle_timeout"`
	// HalfCloseTimeout is the idle timeout once one side has closed its
	// half of the connection. Default 30s.
	HalfCloseTimeout Duration `toml:"half_close_timeout"`
	// MaxConnections bounds concurrent connections; further clients wait in
	// the kernel's accept queue. 0 means no limit.
	MaxConnections int `toml:"max_connections"`
	// LogOpen logs a line when a connection is established, besides the
	// access line when it ends (HAProxy's option logasap).
	LogOpen bool `toml:"log_open"`
	// MaxConnectionsPerIP bounds one client's concurrent connections (the
	// address from PROXY when the peer is trusted); 0 means no limit.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// RatePerIP bounds one client's new connections per second, with
	// bursts of RateBurst (default: RatePerIP rounded up); 0 means no
	// limit.
	RatePerIP float64 `toml:"rate_per_ip"`
	RateBurst int     `toml:"rate_burst"`
	// IPv6Prefix is how many leading bits of an IPv6 address make one
	// client for those limits. Default DefaultIPv6Prefix (64).
	IPv6Prefix int `toml:"ipv6_prefix"`
	// MaxConnectionLifetime closes a connection this long after it was
	// accepted, whatever it is doing (ghostunnel's --max-conn-lifetime):
	// clients reconnect, and spread over a fleet again. 0: no limit.
	MaxConnectionLifetime Duration `toml:"max_connection_lifetime"`

	// Socket options of accepted connections.
	SocketConfig
	// Deferred sets TCP_DEFER_ACCEPT, for ProxyTimeout with AcceptProxy,
	// else HandshakeTimeout. Default true when the client speaks first
	// (the listener terminates TLS or accepts PROXY), false otherwise: on
	// a plain listener the backend may be the one to speak first.
	Deferred *bool `toml:"deferred"`

	TLS    *TLSConfig    `toml:"tls"` // nil: plain TCP, no termination
	Routes []RouteConfig `toml:"route"`
}

// TLSConfig is a listener's [listener.tls] table.
type TLSConfig struct {
	Certificates []CertConfig `toml:"certificates"`
	MinVersion   string       `toml:"min_version"`   // "1.2" (default) or "1.3"
	CipherSuites []string     `toml:"cipher_suites"` // TLS 1.2 suites; default ECDHE+AEAD
	Curves       []string     `toml:"curves"`        // default ["X25519", "P-256"]
	ALPN         []string     `toml:"alpn"`          // protocols offered, in preference order
	ClientCA     string       `toml:"client_ca"`     // PEM file of CAs for client certificates
	ClientAuth   string       `toml:"client_auth"`   // "none" (default), "request", "require"
	// SessionTickets enables resumption; default true.
	SessionTickets *bool `toml:"session_tickets"`
	// SessionTicketLifetime is how long after a ticket is issued a client
	// may resume with it rather than do a full handshake; at most 168h.
	// Default DefaultSessionTicketLifetime, 1h: shorter than crypto/tls's 7
	// days, so that a stolen ticket is good for an hour, not a week; longer
	// than the 5 minutes of nginx and HAProxy, so that the clients that all
	// reconnect at once after a backend deploy still resume rather than all
	// doing full handshakes.
	SessionTicketLifetime Duration `toml:"session_ticket_lifetime"`
	// SessionTicketKeys names this listener's session ticket key file;
	// default the top-level session_ticket_keys.
	SessionTicketKeys string `toml:"session_ticket_keys"`
	// KTLS hands each connection's record layer to the kernel after the
	// handshake, so that its bytes are spliced like a plain connection's
	// and crypto/tls's state is let go: "auto" (the default) where the
	// kernel can, "off", or "require": refuse to start without a kernel
	// that can. A connection the kernel cannot take (a resumed TLS 1.2
	// session, say) stays in userspace either way.
	KTLS string `toml:"ktls"`
	// DynamicRecordSizing starts each connection with a record of one TCP
	// segment, each after it one more, up to 16 KiB (crypto/tls's
	// adaptive sizing), for pages a browser should render as they
	// arrive; default false: 16 KiB records from the start (nginx's
	// ssl_buffer_size 16k). Kernel TLS makes its own records of whatever
	// is written, so it has no effect on connections the kernel took.
	DynamicRecordSizing bool `toml:"dynamic_record_sizing"`
}

// The values of [listener.tls] ktls.
const (
	KTLSAuto    = "auto"
	KTLSOff     = "off"
	KTLSRequire = "require"
)

// CertConfig names a certificate chain and its key, both PEM files.
type CertConfig struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// RouteConfig is one [[listener.route]]. Every matcher that is set must
// match; a route with none is the default. Routes are tried in order.
type RouteConfig struct {
	Name      string   `toml:"name"`
	SNI       []string `toml:"sni"`       // exact names or "*.example.com"
	ALPN      []string `toml:"alpn"`      // negotiated protocol is one of these
	WebSocket *bool    `toml:"websocket"` // true: only WebSocket upgrades; false: only others
	ClientCN  []string `toml:"client_cn"` // verified client certificate CN is one of these
	Upstream  string   `toml:"upstream"`
	// Mode is "terminate" (the default on a listener with [listener.tls])
	// or "passthrough": route on the ClientHello's server name and ALPN
	// offer, and relay the TLS bytes untouched.
	Mode string `toml:"mode"`
	// IdleTimeout overrides the listener's for connections on this route.
	IdleTimeout Duration `toml:"idle_timeout"`
	// ServerFirst: the protocol behind this route lets the server speak
	// first, so a client that has sent nothing when a WebSocket peek ends
	// is relayed here rather than closed.
	ServerFirst bool `toml:"server_first"`
}

// UpstreamConfig is one [[upstream]] pool.
type UpstreamConfig struct {
	Name    string   `toml:"name"`
	Servers []string `toml:"servers"` // "host:port", "[v6]:port" or "unix:/path"
	Balance string   `toml:"balance"` // "round_robin" (default) or "least_conn"
	// ConnectTimeout bounds each dial. Default 5s.
	ConnectTimeout Duration `toml:"connect_timeout"`
	SendProxy      string   `toml:"send_proxy"` // "", "v1" or "v2"
	// Protocols are the application protocols (ALPN names, such as "h2"
	// and "http/1.1") the servers speak. A listener offers a client only
	// protocols that the route it can take carries; none (the default)
	// means plain TCP, for clients that ask for no protocol.
	Protocols []string `toml:"protocols"`
	// MaxFails failed dials within FailTimeout take a server out for
	// FailTimeout. Defaults 1 and 10s, as in nginx; max_fails = 0 disables.
	MaxFails    *int     `toml:"max_fails"`
	FailTimeout Duration `toml:"fail_timeout"`

	// Socket options of dialled connections.
	SocketConfig
}

// SocketConfig holds the socket option keys listeners and upstreams share
// (see SocketOptions); embedded, its keys sit in their tables. On a unix
// socket only RcvBuf and SndBuf apply.
type SocketConfig struct {
	// NoDelay sets TCP_NODELAY; default true.
	NoDelay *bool `toml:"nodelay"`
	// KeepAlive is the idle time before TCP keepalive probes start: unset
	// means DefaultKeepAlive, "0s" turns keepalive off.
	KeepAlive *Duration `toml:"keepalive"`
	// KeepAliveInterval is the time between unanswered probes, default
	// DefaultKeepAliveInterval; after KeepAliveCount of them (default
	// DefaultKeepAliveCount) the kernel resets the connection.
	KeepAliveInterval Duration `toml:"keepalive_interval"`
	KeepAliveCount    int      `toml:"keepalive_count"`
	// RcvBuf and SndBuf set SO_RCVBUF and SO_SNDBUF; zero (unset) leaves
	// the kernel default, which autotunes.
	RcvBuf Size `toml:"rcvbuf"`
	SndBuf Size `toml:"sndbuf"`
}

// Duration is a time.Duration written as a string such as "10s" or "1m30s".
type Duration struct{ time.Duration }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: expected a string such as \"10s\", \"1m30s\" or \"500ms\"", b)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", b)
	}
	d.Duration = v
	return nil
}

// MarshalText formats the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// or returns d, or def when d is zero.
func (d Duration) or(def time.Duration) time.Duration {
	if d.Duration == 0 {
		return def
	}
	return d.Duration
}

// Defaults for zero values in Config.
const (
	DefaultDrainTimeout = 30 * time.Second
	// DefaultHandshakeQueueTimeout is how long a handshake waits for a
	// slot under max_handshakes.
	DefaultHandshakeQueueTimeout = time.Second
	DefaultProxyTimeout          = 5 * time.Second
	DefaultHandshakeTimeout      = 10 * time.Second
	DefaultConnectTimeout        = 5 * time.Second
	DefaultFailTimeout           = 10 * time.Second
	DefaultMaxFails              = 1
	// See TLSConfig.SessionTicketLifetime for why.
	DefaultSessionTicketLifetime = time.Hour
	// DefaultWatchInterval: a renewed certificate is served within
	// seconds, for a read of each (small) file every few seconds.
	DefaultWatchInterval = 5 * time.Second
)

// DefaultGCPercent keeps sluice's heap close to its live memory. Most of
// that memory is long-lived per-connection TLS state, so Go's default of
// 100 would let RSS run to about twice it; 25 measured 14.9 against 19.9
// KiB per idle TLS connection, with no CPU cost visible in the request,
// bulk and handshake benchmarks.
const DefaultGCPercent = 25

// GCPercentOrDefault returns the configured GC target or the default.
func (c *Config) GCPercentOrDefault() int {
	if c.GCPercent == nil {
		return DefaultGCPercent
	}
	return *c.GCPercent
}

// rateBurst is the burst of rate_per_ip: as set, else the rate rounded
// up, at least 1.
func (lc *ListenerConfig) rateBurst() int {
	if lc.RateBurst > 0 {
		return lc.RateBurst
	}
	return max(1, int(math.Ceil(lc.RatePerIP)))
}

// ipv6Prefix is the IPv6 prefix length of one client.
func (lc *ListenerConfig) ipv6Prefix() int {
	if lc.IPv6Prefix == 0 {
		return DefaultIPv6Prefix
	}
	return lc.IPv6Prefix
}

// DrainTimeoutOrDefault returns the configured drain timeout or the default.
func (c *Config) DrainTimeoutOrDefault() time.Duration { return c.DrainTimeout.or(DefaultDrainTimeout) }

// watchInterval is how often the files are checked, 0 when they are not.
func (c *Config) watchInterval() time.Duration {
	if c.WatchFiles != nil && !*c.WatchFiles {
		return 0
	}
	return c.WatchInterval.or(DefaultWatchInterval)
}

// TicketKeysFile is the session ticket key file of TLS listener tc, or ""
// when it has none (keys in memory) or no session tickets.
func (c *Config) TicketKeysFile(tc *TLSConfig) string {
	if tc.SessionTickets != nil && !*tc.SessionTickets {
		return ""
	}
	if tc.SessionTicketKeys != "" {
		return tc.SessionTicketKeys
	}
	return c.SessionTicketKeys
}
