package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"
)

// faults injects the soak's two kinds of trouble while streams run:
// backends SIGKILLed and restarted on their address, and sluice reloaded
// with SIGHUP, once with a configuration it must refuse.
type faults struct {
	backends     []*backendProc
	sluice       *sluiceProc
	scrape       *scraper
	conf         sluiceConf
	confPath     string
	killEvery    time.Duration
	restartAfter time.Duration
	reloadEvery  time.Duration
	invalidAt    int // the reload that is refused (1-based); 0: none
	rng          *rand.Rand

	mu       sync.Mutex
	kills    []kill
	restarts int
	reloads  int // accepted, confirmed by sluice_reloads_total
	refused  int // refused, confirmed likewise
	problems []string
}

func (f *faults) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

// killLoop kills one random backend every killEvery until ctx ends. Each
// is restarted before the next kill, so an upstream always has a server.
// The restart is not cut short by ctx: the run ends with every slot up.
func (f *faults) killLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.killEvery):
		}
		b := f.backends[f.rng.IntN(len(f.backends))]
		k, err := b.kill()
		if err != nil {
			f.problem("kill: %v", err)
			continue
		}
		f.mu.Lock()
		f.kills = append(f.kills, k)
		f.mu.Unlock()
		time.Sleep(f.restartAfter)
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = b.start(rctx)
		cancel()
		if err != nil {
			f.problem("restart: %v", err)
			continue
		}
		f.mu.Lock()
		f.restarts++
		f.mu.Unlock()
	}
}

// reloadLoop rewrites sluice's configuration every reloadEvery, between
// its two valid variants, and sends SIGHUP; the invalidAt-th time it writes
// a file sluice must refuse, then restores a valid one. Each reload is
// confirmed through sluice_reloads_total before the next.
func (f *faults) reloadLoop(ctx context.Context) {
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.reloadEvery):
		}
		if n == f.invalidAt {
			if !f.reload(f.conf.renderInvalid(), false) {
				return
			}
		}
		if !f.reload(f.conf.render(n%2), true) {
			return
		}
	}
}

// reload writes text, sends SIGHUP and waits for sluice to count the
// reload as accepted or refused; false means sluice is gone or stuck.
func (f *faults) reload(text string, valid bool) bool {
	f.mu.Lock()
	wantOK, wantRefused := f.reloads, f.refused
	f.mu.Unlock()
	if valid {
		wantOK++
	} else {
		wantRefused++
	}
	if err := writeConf(f.confPath, text); err != nil {
		f.problem("reload: %v", err)
		return false
	}
	if err := f.sluice.signal(syscall.SIGHUP); err != nil {
		f.problem("reload: SIGHUP: %v", err)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		m, err := f.scrape.scrape(ctx)
		if err == nil {
			ok := int(m.series[`sluice_reloads_total{result="success"}`]) // start-up is not counted
			refused := int(m.series[`sluice_reloads_total{result="failure"}`])
			if ok > wantOK || refused > wantRefused || (valid && refused != wantRefused) || (!valid && ok != wantOK) {
				f.problem("reload: sluice counts %d accepted and %d refused, expected %d and %d", ok, refused, wantOK, wantRefused)
				return false
			}
			if ok == wantOK && refused == wantRefused {
				f.mu.Lock()
				f.reloads, f.refused = ok, refused
				f.mu.Unlock()
				return true
			}
		}
		select {
		case <-ctx.Done():
			f.problem("reload (valid=%v): not counted within 10s (last scrape error: %v)", valid, err)
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}
