package l4

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"sluice/tlsterm"
)

// Metrics holds the instruments of one Proxy, across its reloads: a
// listener's or a server's counters live as long as the process, keyed by
// names from the configuration, so that a reload never resets them.
// Labels carry only such names and short fixed vocabularies (reasons, TLS
// versions and ciphers), never a client address or a client-chosen
// name, so the number of series is bounded by the configuration.
//
// The data path pays one atomic add per event; histograms take a short
// lock once per connection or handshake. What a scrape can compute from
// live state (connections open, bytes of live relays, certificates) is
// computed then, in writeState.
type Metrics struct {
	set *metrics.Set

	mu        sync.Mutex
	listeners map[string]*listenerMeter
	upstreams map[string]*upstreamMeter
	servers   map[serverKey]*serverMeter
}

type serverKey struct{ upstream, server string }

// NewMetrics returns an empty set of instruments.
func NewMetrics() *Metrics {
	m := &Metrics{
		set:       metrics.NewSet(),
		listeners: make(map[string]*listenerMeter),
		upstreams: make(map[string]*upstreamMeter),
		servers:   make(map[serverKey]*serverMeter),
	}
	for _, kind := range fileReloadKinds {
		for _, result := range []string{"success", "failure"} {
			m.set.GetOrCreateCounter("sluice_file_reloads_total" + labels("kind", kind, "result", result))
		}
	}
	return m
}

// Buckets of the histograms, in seconds. Connections last from a
// refused handshake to a WebSocket held for a day.
var (
	durationBuckets  = []float64{0.001, 0.01, 0.1, 1, 10, 60, 300, 900, 3600, 14400, 43200, 86400}
	handshakeBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	connectBuckets   = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

// Reasons a handshake fails, for sluice_tls_handshake_failures_total.
const (
	hsFailTimeout    = "timeout"
	hsFailProtocol   = "protocol"
	hsFailClientCert = "client_certificate"
	hsFailNoALPN     = "no_application_protocol"
	hsFailClosed     = "closed"
	// sluice shed it: it waited handshake_timeout for a turn to compute.
	hsFailNoTurn = "no_turn"
)

var hsFailReasons = []string{hsFailTimeout, hsFailProtocol, hsFailClientCert, hsFailNoALPN, hsFailClosed, hsFailNoTurn}

// Record layers of a terminated connection, and why one stayed in
// userspace, for sluice_tls_record_layer_total.
const (
	layerKernel    = "kernel"
	layerUserspace = "userspace"
	// fallbackOff: ktls = "off"; fallbackUnavailable: the kernel has no
	// TLS; the others are tlsterm's (FallbackReason).
	fallbackOff         = "off"
	fallbackUnavailable = "unavailable"
)

var fallbackReasons = []string{fallbackOff, fallbackUnavailable, tlsterm.FallbackCipher, tlsterm.FallbackResumed,
	tlsterm.FallbackBuffered, tlsterm.FallbackKernel, tlsterm.FallbackOther}

// Reasons a dial fails, for sluice_upstream_connect_errors_total.
const (
	dialTimeout     = "timeout"
	dialRefused     = "refused"
	dialUnreachable = "unreachable"
	dialReset       = "reset"
	dialNoFDs       = "out_of_descriptors"
	dialError       = "error"
)

var dialReasons = []string{dialTimeout, dialRefused, dialUnreachable, dialReset, dialNoFDs, dialError}

// listenerMeter is one listener's instruments, shared by the servers of
// every configuration that has a listener of that name, and the
// connections those servers are relaying, so that a scrape can count
// their bytes as they move.
type listenerMeter struct {
	m    *Metrics
	name string

	accepted, limitReached, healthChecks *metrics.Counter
	duration, handshake                  *metrics.PrometheusHistogram
	closed                               sync.Map // closeKey → *metrics.Counter
	handshakes                           sync.Map // tlsKey → *metrics.Counter
	hsFailures                           map[string]*metrics.Counter
	// recordLayer counts terminated connections by record layer: "" for
	// the kernel, else the reason they stayed in userspace.
	recordLayer map[string]*metrics.Counter

	mu      sync.Mutex
	open    int64 // connections accepted and not yet ended
	relays  conn  // sentinel of the list of relaying connections
	doneIn  int64 // bytes of relays that have ended
	doneOut int64
}

type closeKey struct{ route, reason string }

type tlsKey struct {
	version, cipher string
	resumed         bool
}

// listener returns the meter of the listener called name. Nil-safe: a
// Server without a Proxy has no Metrics, and its meter does nothing.
func (m *Metrics) listener(name string) *listenerMeter {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if lm := m.listeners[name]; lm != nil {
		return lm
	}
	l := labels("listener", name)
	lm := &listenerMeter{
		m:            m,
		name:         name,
		accepted:     m.set.NewCounter("sluice_listener_accepted_connections_total" + l),
		limitReached: m.set.NewCounter("sluice_listener_limit_reached_total" + l),
		healthChecks: m.set.NewCounter("sluice_listener_health_checks_total" + l),
		duration:     m.set.NewPrometheusHistogramExt("sluice_connection_duration_seconds"+l, durationBuckets),
		handshake:    m.set.NewPrometheusHistogramExt("sluice_tls_handshake_duration_seconds"+l, handshakeBuckets),
		hsFailures:   make(map[string]*metrics.Counter, len(hsFailReasons)),
		recordLayer:  make(map[string]*metrics.Counter, len(fallbackReasons)+1),
	}
	// Every reason is there from the start, at zero, so that a rate()
	// over a new listener's failures has a series to start from.
	for _, r := range hsFailReasons {
		lm.hsFailures[r] = m.set.NewCounter("sluice_tls_handshake_failures_total" + labels("listener", name, "reason", r))
	}
	lm.recordLayer[""] = m.set.NewCounter("sluice_tls_record_layer_total" + labels("listener", name, "layer", layerKernel, "reason", "none"))
	for _, r := range fallbackReasons {
		lm.recordLayer[r] = m.set.NewCounter("sluice_tls_record_layer_total" + labels("listener", name, "layer", layerUserspace, "reason", r))
	}
	lm.relays.next, lm.relays.prev = &lm.relays, &lm.relays
	m.listeners[name] = lm
	return lm
}

// acceptedConn counts a connection accepted.
func (lm *listenerMeter) acceptedConn() {
	if lm == nil {
		return
	}
	lm.accepted.Inc()
	lm.adoptedConn()
}

// adoptedConn counts a connection open that another process accepted.
func (lm *listenerMeter) adoptedConn() {
	if lm == nil {
		return
	}
	lm.mu.Lock()
	lm.open++
	lm.mu.Unlock()
}

// limitHit counts a time the listener's max_connections was reached.
func (lm *listenerMeter) limitHit() {
	if lm != nil {
		lm.limitReached.Inc()
	}
}

// handshakeDone counts a completed handshake and its duration.
func (lm *listenerMeter) handshakeDone(version, cipher string, resumed bool, d time.Duration) {
	if lm == nil {
		return
	}
	k := tlsKey{version, cipher, resumed}
	c, ok := lm.handshakes.Load(k)
	if !ok {
		res := "false"
		if resumed {
			res = "true"
		}
		c, _ = lm.handshakes.LoadOrStore(k, lm.m.set.GetOrCreateCounter("sluice_tls_handshakes_total"+
			labels("listener", lm.name, "version", version, "cipher", cipher, "resumed", res)))
	}
	c.(*metrics.Counter).Inc()
	lm.handshake.Update(d.Seconds())
}

// handshakeFailed counts a failed handshake (reason: one of hsFailReasons).
// Its duration stays out of the histogram, which would otherwise fill with
// handshake timeouts when scanners call.
func (lm *listenerMeter) handshakeFailed(reason string) {
	if lm != nil {
		lm.hsFailures[reason].Inc()
	}
}

// recordLayerChosen counts a terminated connection's record layer:
// fallback "" for the kernel, else one of fallbackReasons.
func (lm *listenerMeter) recordLayerChosen(fallback string) {
	if lm != nil {
		lm.recordLayer[fallback].Inc()
	}
}

// healthCheck counts a load balancer's health check.
func (lm *listenerMeter) healthCheck() {
	if lm != nil {
		lm.healthChecks.Inc()
	}
}

// relaying adds c, whose relay is starting, to the connections whose
// bytes a scrape counts.
func (lm *listenerMeter) relaying(c *conn) {
	if lm == nil {
		return
	}
	lm.mu.Lock()
	c.prev, c.next = lm.relays.prev, &lm.relays
	c.prev.next, lm.relays.prev = c, c
	lm.mu.Unlock()
}

// relayingConns appends the connections relaying now to conns.
func (lm *listenerMeter) relayingConns(conns []*conn) []*conn {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	for c := lm.relays.next; c != &lm.relays; c = c.next {
		conns = append(conns, c)
	}
	return conns
}

// allListeners returns every listener's meter.
func (m *Metrics) allListeners() []*listenerMeter {
	m.mu.Lock()
	defer m.mu.Unlock()
	lms := make([]*listenerMeter, 0, len(m.listeners))
	for _, lm := range m.listeners {
		lms = append(lms, lm)
	}
	return lms
}

// ended counts a connection's end: its duration, its bytes if it relayed
// (they move from the live count to the total in one step, so that a
// scrape never sees them twice or not at all), and last its reason: a
// scrape that sees the close counted sees the rest of it too.
func (lm *listenerMeter) ended(c *conn) {
	if lm == nil {
		return
	}
	in, out := c.bytes()
	lm.duration.Update(time.Since(c.start).Seconds())
	lm.mu.Lock()
	lm.open--
	if c.next != nil {
		c.prev.next, c.next.prev = c.next, c.prev
		c.prev, c.next = nil, nil
		lm.doneIn += in
		lm.doneOut += out
	}
	lm.mu.Unlock()
	route := ""
	if c.route != nil {
		route = c.route.Name
	}
	k := closeKey{route, c.reason}
	ctr, ok := lm.closed.Load(k)
	if !ok {
		ctr, _ = lm.closed.LoadOrStore(k, lm.m.set.GetOrCreateCounter("sluice_connections_closed_total"+
			labels("listener", lm.name, "route", route, "reason", c.reason)))
	}
	ctr.(*metrics.Counter).Inc()
}

// state returns the connections open and the bytes moved so far, those of
// live relays included.
func (lm *listenerMeter) state() (open, in, out int64) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	in, out = lm.doneIn, lm.doneOut
	for c := lm.relays.next; c != &lm.relays; c = c.next {
		ci, co := c.bytes()
		in += ci
		out += co
	}
	return lm.open, in, out
}

// upstreamMeter is one upstream's instruments.
type upstreamMeter struct {
	connect *metrics.PrometheusHistogram
}

func (m *Metrics) upstream(name string) *upstreamMeter {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if um := m.upstreams[name]; um != nil {
		return um
	}
	um := &upstreamMeter{connect: m.set.NewPrometheusHistogramExt(
		"sluice_upstream_connect_duration_seconds"+labels("upstream", name), connectBuckets)}
	m.upstreams[name] = um
	return um
}

func (um *upstreamMeter) connected(d time.Duration) {
	if um != nil {
		um.connect.Update(d.Seconds())
	}
}

// serverMeter is one upstream server's instruments.
type serverMeter struct {
	conns, ejections *metrics.Counter
	errors           map[string]*metrics.Counter // by dial reason
	// backend is the server's latest Backend, whose live state (its
	// connections, whether it is in rotation) a scrape reads.
	backend atomic.Pointer[Backend]
}

func (m *Metrics) server(upstream, addr string) *serverMeter {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := serverKey{upstream, addr}
	if sm := m.servers[k]; sm != nil {
		return sm
	}
	l := labels("upstream", upstream, "server", addr)
	sm := &serverMeter{
		conns:     m.set.NewCounter("sluice_upstream_server_connections_total" + l),
		ejections: m.set.NewCounter("sluice_upstream_server_ejections_total" + l),
		errors:    make(map[string]*metrics.Counter, len(dialReasons)),
	}
	for _, r := range dialReasons {
		sm.errors[r] = m.set.NewCounter("sluice_upstream_connect_errors_total" + labels("upstream", upstream, "server", addr, "reason", r))
	}
	m.servers[k] = sm
	return sm
}

func (sm *serverMeter) connected() {
	if sm != nil {
		sm.conns.Inc()
	}
}

func (sm *serverMeter) failed(reason string, ejected bool) {
	if sm == nil {
		return
	}
	sm.errors[reason].Inc()
	if ejected {
		sm.ejections.Inc()
	}
}

// labels formats label pairs, k1, v1, k2, v2..., as {k1="v1",k2="v2"},
// escaping the values as the text format requires.
func labels(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(kv[i+1]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// fileReloadKinds are the kinds of sluice_file_reloads_total, whose
// series exist from the start, at 0.
var fileReloadKinds = []string{"certificates", "session_ticket_keys"}

// fileReloaded counts a reload of certificates or ticket keys made
// because their files changed.
func (m *Metrics) fileReloaded(kind string, ok bool) {
	result := "success"
	if !ok {
		result = "failure"
	}
	m.set.GetOrCreateCounter("sluice_file_reloads_total" + labels("kind", kind, "result", result)).Inc()
}
