package l4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
)

// Reload puts cfg to work in place of the running configuration, all at
// once, and closes no connection. If cfg is invalid, or a new listener
// cannot be bound, it returns the errors (as New and Listen would) and
// nothing changes. Otherwise:
//
//   - a listener whose address is unchanged keeps its socket: the old
//     server stops accepting and the new one accepts on the same socket,
//     so nothing is lost from its accept queue; a new address is bound; a
//     removed listener stops accepting and closes its socket;
//   - every connection accepted from then on is served entirely by the
//     new configuration (routes, TLS, certificates, timeouts, limits,
//     upstreams); every connection already accepted goes on with the one
//     it started with, until it ends by itself;
//   - upstream servers are matched by upstream name and address, and keep
//     their passive health state and count of connections; a listener's
//     max_connections counts the connections of both;
//   - sessions resume across it: every configuration shares ticket keys.
func (p *Proxy) Reload(ctx context.Context, cfg *Config) (Changes, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.gen
	if old.listeners == nil {
		return Changes{}, errors.New("l4: Reload before Listen")
	}
	next, err := p.build(cfg, old)
	if err != nil {
		return Changes{}, err
	}
	// Bind the new addresses first: if one fails, nothing has changed.
	kept := make([]int, len(cfg.Listeners)) // old index, or -1 for a new socket
	var bound []net.Listener
	for i, lc := range cfg.Listeners {
		kept[i] = slices.IndexFunc(old.cfg.Listeners, func(o ListenerConfig) bool { return o.Address == lc.Address })
		if kept[i] >= 0 {
			next.listeners = append(next.listeners, old.listeners[kept[i]])
			continue
		}
		ln, err := listen(ctx, lc.Address, lc.ReusePort, lc.socketOptions())
		if err != nil {
			for _, l := range bound {
				l.Close()
			}
			return Changes{}, &FieldError{Path: fmt.Sprintf("listener[%d].address", i), Err: err}
		}
		bound = append(bound, ln)
		next.listeners = append(next.listeners, ln)
	}

	// Switch over, listener by listener: between the old server's last
	// Accept and the new one's first, clients wait in the accept queue.
	handed := make([]bool, len(old.servers))
	for i, s := range next.servers {
		if j := kept[i]; j >= 0 {
			o := old.servers[j]
			o.init()
			s.limit = o.limit
			s.limit.setMax(s.MaxConns)
			o.retire(true)
			handed[j] = true
			if err := adopt(next.listeners[i], cfg.Listeners[i].socketOptions()); err != nil {
				p.logger.Warn("socket options of a kept listener not changed", "listener", s.Name, "error", err)
			}
		}
		if p.served {
			p.serve(s, next.listeners[i])
		}
	}
	for j, o := range old.servers {
		if !handed[j] {
			o.retire(false)
			if !p.served {
				old.listeners[j].Close() // never served: retire had none to close
			}
		}
		p.retired = append(p.retired, o)
		go p.forget(o)
	}
	next.applyLimits(p.handshakes)
	next.useTicketKeys(p.logger)
	p.gen = next
	p.publish()
	p.kickWatcher() // watch_interval may have changed
	return changes(old.cfg, cfg), nil
}

// forget drops a retired server once its last connection has ended, so
// that nothing of an earlier configuration outlives its connections.
func (p *Proxy) forget(s *Server) {
	s.conns.Wait()
	p.mu.Lock()
	p.retired = slices.DeleteFunc(p.retired, func(r *Server) bool { return r == s })
	forgot := p.forgot
	p.mu.Unlock()
	if forgot != nil {
		forgot <- s
	}
}

// Retired reports how many servers of earlier configurations still hold
// connections.
func (p *Proxy) Retired() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.retired)
}

// Changes says what a reload changed, by name: listeners by address,
// upstreams by name.
type Changes struct {
	ListenersAdded, ListenersRemoved, ListenersChanged []string
	UpstreamsAdded, UpstreamsRemoved, UpstreamsChanged []string
}

// LogAttrs returns the changes as log attributes, the empty lists left out.
func (c Changes) LogAttrs() []any {
	var attrs []any
	for _, kv := range []struct {
		key  string
		list []string
	}{
		{"listeners_added", c.ListenersAdded}, {"listeners_removed", c.ListenersRemoved},
		{"listeners_changed", c.ListenersChanged}, {"upstreams_added", c.UpstreamsAdded},
		{"upstreams_removed", c.UpstreamsRemoved}, {"upstreams_changed", c.UpstreamsChanged},
	} {
		if len(kv.list) > 0 {
			attrs = append(attrs, kv.key, kv.list)
		}
	}
	return attrs
}

// changes compares two configurations.
func changes(old, cfg *Config) Changes {
	var c Changes
	c.ListenersAdded, c.ListenersRemoved, c.ListenersChanged = diff(old.Listeners, cfg.Listeners,
		func(l ListenerConfig) string { return l.Address })
	c.UpstreamsAdded, c.UpstreamsRemoved, c.UpstreamsChanged = diff(old.Upstreams, cfg.Upstreams,
		func(u UpstreamConfig) string { return u.Name })
	return c
}

// diff lists the keys of the items only in b, only in a, and in both but
// different.
func diff[T any](a, b []T, key func(T) string) (added, removed, changed []string) {
	in := func(list []T, k string) (T, bool) {
		for _, x := range list {
			if key(x) == k {
				return x, true
			}
		}
		var zero T
		return zero, false
	}
	for _, x := range b {
		if y, ok := in(a, key(x)); !ok {
			added = append(added, key(x))
		} else if !reflect.DeepEqual(x, y) {
			changed = append(changed, key(x))
		}
	}
	for _, x := range a {
		if _, ok := in(b, key(x)); !ok {
			removed = append(removed, key(x))
		}
	}
	return added, removed, changed
}

// Active returns the number of connections being served, by the running
// configuration and earlier ones.
func (p *Proxy) Active() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, s := range p.gen.servers {
		n += s.active.Load()
	}
	for _, s := range p.retired {
		n += s.active.Load()
	}
	return n
}
