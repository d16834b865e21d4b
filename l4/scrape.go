package l4

import (
	"io"
	"slices"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"sluice/splice"
)

// scrapeView is what a scrape reads of the running configuration. It is
// published whole, so that a scrape never waits on Proxy.mu, which a
// drain holds for as long as it lasts.
type scrapeView struct {
	gen    *generation
	parker *splice.Parker
}

// publish makes the running configuration the one scrapes see; callers
// hold p.mu.
func (p *Proxy) publish() {
	p.view.Store(&scrapeView{gen: p.gen, parker: p.parker})
}

// WriteMetrics writes the proxy's metrics in the Prometheus text format:
// the counters and histograms kept as events happen, then what is read
// from live state now (connections open, bytes of the relays still
// running, certificates, servers in rotation, the data path's pools).
func (p *Proxy) WriteMetrics(w io.Writer) {
	p.metrics.set.WritePrometheus(w)
	v := p.view.Load()
	if v == nil {
		return
	}
	now := time.Now()
	s := metrics.NewSet()
	m := p.metrics

	m.mu.Lock()
	meters := make([]*listenerMeter, 0, len(m.listeners))
	for _, lm := range m.listeners {
		meters = append(meters, lm)
	}
	servers := make(map[serverKey]*serverMeter, len(m.servers))
	for k, sm := range m.servers {
		servers[k] = sm
	}
	m.mu.Unlock()
	for _, lm := range meters {
		open, in, out := lm.state()
		l := labels("listener", lm.name)
		s.NewGauge("sluice_listener_connections"+l, nil).Set(float64(open))
		s.NewCounter("sluice_listener_received_bytes_total" + l).Set(uint64(in))
		s.NewCounter("sluice_listener_sent_bytes_total" + l).Set(uint64(out))
	}

	g := v.gen
	for _, srv := range g.servers {
		// Unnamed listeners on one address (reuse_port) share a name, and
		// so a series: their limits add up, as their counts do.
		s.GetOrCreateGauge("sluice_listener_max_connections"+labels("listener", srv.Name), nil).Add(float64(srv.MaxConns))
	}
	for i, st := range g.stores {
		for _, ci := range st.Certificates() {
			file := ci.File
			if file == "" {
				file = "(self-signed)"
			}
			s.GetOrCreateGauge("sluice_tls_certificate_expiry_timestamp_seconds"+
				labels("listener", g.storeListener[i], "subject", ci.Subject, "file", file), nil).
				Set(float64(ci.NotAfter.Unix()))
		}
	}

	// The key IDs tell whether a fleet's instances share their keys.
	for file, tk := range g.ticketKeys {
		ids := tk.IDs()
		s.GetOrCreateGauge("sluice_tls_session_ticket_keys"+labels("file", file, "encrypting_key", ids[0]), nil).
			Set(float64(len(ids)))
	}

	// Servers of the running configuration, and those of earlier ones
	// while they still hold connections.
	for _, u := range g.upstreams {
		for _, b := range u.Servers {
			writeServer(s, u.Name, b, now)
		}
	}
	for k, sm := range servers {
		if b := sm.backend.Load(); b != nil && b.Active() > 0 && !g.hasServer(k) {
			writeServer(s, k.upstream, b, now)
		}
	}

	parked := 0
	if v.parker != nil {
		parked = v.parker.Parked()
	}
	s.NewGauge("sluice_relay_parked_directions", nil).Set(float64(parked))
	ps := p.pipes.Stats()
	s.NewGauge("sluice_relay_pipes_in_use", nil).Set(float64(ps.InUse))
	s.NewGauge("sluice_relay_pipes_open", nil).Set(float64(ps.Open))
	s.NewGauge("sluice_relay_buffers_in_use", nil).Set(float64(p.buffers.Outstanding()))
	s.WritePrometheus(w)
}

// writeServer writes an upstream server's connections now and whether it
// is in rotation.
func writeServer(s *metrics.Set, upstream string, b *Backend, now time.Time) {
	l := labels("upstream", upstream, "server", b.Addr)
	s.GetOrCreateGauge("sluice_upstream_server_connections"+l, nil).Set(float64(b.Active()))
	up := 0.0
	if b.available(now) {
		up = 1
	}
	s.GetOrCreateGauge("sluice_upstream_server_up"+l, nil).Set(up)
}

// hasServer reports whether the configuration has the upstream server k.
func (g *generation) hasServer(k serverKey) bool {
	u := g.upstreams[k.upstream]
	return u != nil && slices.ContainsFunc(u.Servers, func(b *Backend) bool { return b.Addr == k.server })
}
