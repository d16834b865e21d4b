package l4

import (
	"strings"
	"sync"
	"time"
)

// Events of a round of the file watcher, which checkFiles returns (for
// tests and its own log lines).
const (
	watchCertsReloaded  = "certificates reloaded"
	watchCertsFailed    = "certificates failed"
	watchTicketsChanged = "ticket keys changed"
	watchTicketsFailed  = "ticket keys failed"
	watchRetry          = "failed: again next round"
)

// fileWatch is the state of the file watcher.
type fileWatch struct {
	round sync.Mutex // one round at a time
	// failing counts the rounds in a row a store or key file failed to
	// load, under round.
	failing map[any]int

	// Under Proxy.mu.
	stop, done chan struct{}
	kick       chan struct{} // a reload may have changed the interval
	closed     bool          // Shutdown has begun: no watcher may start
}

// watchFiles checks the running configuration's certificate, key, client
// CA and session ticket key files every watch_interval until stop is
// closed, and re-reads those that changed: a certificate renewed by a
// controller (cert-manager, certbot, a Kubernetes Secret) is served from
// the next handshake on, with no signal.
func (p *Proxy) watchFiles(stop <-chan struct{}, kick <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTimer(p.watchInterval())
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-kick:
		case <-t.C:
			p.checkFiles()
		}
		t.Reset(p.watchInterval())
	}
}

// watchInterval is the running configuration's; when watching is off, the
// watcher still wakes at the default interval (a reload kicks it anyway).
func (p *Proxy) watchInterval() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.gen.cfg.watchInterval(); d > 0 {
		return d
	}
	return DefaultWatchInterval
}

// checkFiles runs one round: it re-reads the stores and ticket key files
// of the running configuration whose files changed, and those that failed
// to load last round, and returns what happened. One that fails keeps
// serving what it had. A failure is logged only if it happens twice in a
// row, since files are seldom replaced all at once (certbot swaps a
// certificate's and its key's links one after the other), and once per
// change of the files; one that keeps failing is tried every round, so
// that a failure that was not the files' (no descriptor left, say) does
// not keep a renewed certificate out. It reads files without holding
// p.mu, so that a stuck file system blocks no reload and no shutdown.
func (p *Proxy) checkFiles() []string {
	p.watch.round.Lock()
	defer p.watch.round.Unlock()
	p.mu.Lock()
	g := p.gen
	p.mu.Unlock()
	if g.cfg.watchInterval() == 0 {
		return nil
	}
	var events []string
	failing := make(map[any]int)
	// failed counts a failure of item, and says whether to log it.
	failed := func(item any, changed bool) bool {
		n := p.watch.failing[item]
		if changed {
			n = 0 // new content: a round's grace again
		}
		failing[item] = n + 1
		if n+1 != 2 {
			events = append(events, watchRetry)
			return false
		}
		return true
	}
	for i, st := range g.stores {
		changed := st.Changed()
		if !changed && p.watch.failing[st] == 0 {
			continue
		}
		listener := g.storeListener[i]
		var es errs
		es.wrapCertErrors(g.storePath[i], st.Reload())
		if len(es) > 0 {
			if failed(st, changed) {
				p.metrics.fileReloaded("certificates", false)
				for _, e := range es {
					p.logger.Error("certificate files changed and cannot be loaded; the listener keeps its certificates",
						"listener", listener, "error", e.Error())
				}
				events = append(events, watchCertsFailed)
			}
			continue
		}
		p.metrics.fileReloaded("certificates", true)
		p.logger.Info("certificates reloaded: their files changed", "listener", listener, "names", strings.Join(st.Names(), ","))
		warnExpiring(p.logger, listener, g.storePath[i], st, time.Now())
		events = append(events, watchCertsReloaded)
	}
	for _, tk := range g.ticketKeys {
		changed := tk.Changed()
		if !changed && p.watch.failing[tk] == 0 {
			continue
		}
		keysChanged, err := tk.Reload()
		if err != nil {
			if failed(tk, changed) {
				p.metrics.fileReloaded("session_ticket_keys", false)
				p.logger.Error("session ticket key file changed and cannot be used; the keys in use stay", "error", err.Error())
				events = append(events, watchTicketsFailed)
			}
			continue
		}
		p.metrics.fileReloaded("session_ticket_keys", true)
		if keysChanged {
			logTicketKeys(p.logger, "session ticket keys changed", tk)
			events = append(events, watchTicketsChanged)
		}
	}
	p.watch.failing = failing
	return events
}

// startWatching starts the file watcher, unless it runs or Shutdown has
// begun; callers hold p.mu.
func (p *Proxy) startWatching() {
	if p.watch.stop != nil || p.watch.closed {
		return
	}
	p.watch.stop = make(chan struct{})
	p.watch.done = make(chan struct{})
	p.watch.kick = make(chan struct{}, 1)
	go p.watchFiles(p.watch.stop, p.watch.kick, p.watch.done)
}

// kickWatcher makes the watcher read watch_interval again; callers hold
// p.mu.
func (p *Proxy) kickWatcher() {
	select {
	case p.watch.kick <- struct{}{}:
	default: // a kick is pending, or no watcher
	}
}

// stopWatching stops the file watcher, for good, and waits for it to
// return: for its round to end, if one is under way. Callers do not hold
// p.mu, which the watcher takes between its reads.
func (p *Proxy) stopWatching() {
	p.mu.Lock()
	stop, done := p.watch.stop, p.watch.done
	p.watch.stop, p.watch.closed = nil, true
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			// A round stuck in a file system that does not answer: the
			// drain goes on without it.
			p.logger.Warn("the file watcher is stuck reading files; shutting down without it")
		}
	}
}
