package l4

import (
	"errors"
	"strings"
	"time"
)

// Events the file watcher reports on Proxy.watched (tests).
const (
	watchCertsReloaded  = "certificates reloaded"
	watchCertsFailed    = "certificates failed"
	watchTicketsChanged = "ticket keys changed"
	watchTicketsFailed  = "ticket keys failed"
	watchRetry          = "failed once: again next round"
)

// watchFiles checks the running configuration's certificate, key, client
// CA and session ticket key files every watch_interval until stop is
// closed, and re-reads those that changed: a certificate renewed by a
// controller (cert-manager, certbot, a Kubernetes Secret) is served from
// the next handshake on, with no signal. A stat per file per round is
// all it costs when nothing changes.
func (p *Proxy) watchFiles(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTimer(p.watchInterval())
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		p.checkFiles()
		t.Reset(p.watchInterval())
	}
}

// watchInterval is the running configuration's; when watching is off, the
// watcher still wakes at the default interval, to see a reload turn it on.
func (p *Proxy) watchInterval() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.gen.cfg.watchInterval(); d > 0 {
		return d
	}
	return DefaultWatchInterval
}

// checkFiles re-reads the stores and ticket key files whose files
// changed. One that fails to load keeps serving what it had. It is tried
// once more a round later before the failure is logged, since files are
// seldom replaced all at once (certbot swaps a certificate's and its key's
// links one after the other): an error is logged only for files that
// stayed broken for a round, and once per change of them.
func (p *Proxy) checkFiles() {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.gen
	if g.cfg.watchInterval() == 0 {
		return
	}
	retry := make(map[any]bool) // what failed this round for the first time
	for i, st := range g.stores {
		if !st.Changed() && !p.watchRetry[st] {
			continue
		}
		listener := g.storeListener[i]
		var es errs
		es.wrapCertErrors(g.storePath[i], st.Reload())
		if err := errors.Join(es...); err != nil {
			if !p.watchRetry[st] {
				retry[st] = true
				p.tell(watchRetry)
				continue
			}
			p.metrics.fileReloaded("certificates", false)
			for _, e := range es {
				p.logger.Error("certificate files changed and cannot be loaded; the listener keeps its certificates",
					"listener", listener, "error", e.Error())
			}
			p.tell(watchCertsFailed)
			continue
		}
		p.metrics.fileReloaded("certificates", true)
		p.logger.Info("certificates reloaded: their files changed", "listener", listener, "names", strings.Join(st.Names(), ","))
		warnExpiring(p.logger, listener, g.storePath[i], st, time.Now())
		p.tell(watchCertsReloaded)
	}
	for _, tk := range g.ticketKeys {
		if !tk.Changed() && !p.watchRetry[tk] {
			continue
		}
		changed, err := tk.Reload()
		if err != nil {
			if !p.watchRetry[tk] {
				retry[tk] = true
				p.tell(watchRetry)
				continue
			}
			p.metrics.fileReloaded("session_ticket_keys", false)
			p.logger.Error("session ticket key file changed and cannot be used; the keys in use stay", "error", err.Error())
			p.tell(watchTicketsFailed)
			continue
		}
		p.metrics.fileReloaded("session_ticket_keys", true)
		if changed {
			logTicketKeys(p.logger, "session ticket keys changed", tk)
		}
		p.tell(watchTicketsChanged)
	}
	p.watchRetry = retry
}

// tell reports a watcher event to a test; callers hold p.mu. It gives up
// when the watcher is being stopped, which does not take p.mu.
func (p *Proxy) tell(event string) {
	if p.watched != nil {
		select {
		case p.watched <- event:
		case <-p.watchStop:
		}
	}
}

// startWatching starts the file watcher; callers hold p.mu.
func (p *Proxy) startWatching() {
	p.watchStop = make(chan struct{})
	p.watchDone = make(chan struct{})
	go p.watchFiles(p.watchStop, p.watchDone)
}

// stopWatching stops the file watcher and waits for it to return; callers
// do not hold p.mu, which the watcher takes.
func (p *Proxy) stopWatching() {
	p.mu.Lock()
	stop, done := p.watchStop, p.watchDone
	p.watchStop = nil
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}
