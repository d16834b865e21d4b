package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"

	"sluice/bench/internal/proc"
)

// faults injects the soak's three kinds of trouble while streams run:
// backends SIGKILLed and restarted on their address; sluice reloaded with
// SIGHUP, once with a configuration it must refuse; and sluice upgraded
// with SIGUSR2, which replaces its process and moves its connections.
type faults struct {
	backends     []*backendProc
	scrape       *scraper
	conf         sluiceConf
	confPath     string
	logPath      string
	sluiceComm   string // the sluice processes' name in /proc
	killEvery    time.Duration
	restartAfter time.Duration
	reloadEvery  time.Duration
	upgradeEvery time.Duration // 0: no upgrades
	invalidAt    int           // the reload that is refused (1-based); 0: none
	rng          *rand.Rand

	// signalling serializes reloads and upgrades: a reload is confirmed
	// through counters that an upgrade resets, and an upgrade's new
	// process must read a valid configuration file.
	signalling sync.Mutex

	mu       sync.Mutex
	sluice   *proc.Proc // the process that serves now, which signals go to
	kills    []kill
	restarts int
	reloads  int // accepted, confirmed by sluice_reloads_total
	refused  int // refused, confirmed likewise
	// counted is what the serving process's sluice_reloads_total does
	// not count: the reloads before it started.
	counted  struct{ reloads, refused int }
	upgrades []upgrade
	problems []string
}

// current is the sluice process that serves now.
func (f *faults) current() *proc.Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sluice
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
		if !f.reloadOnce(n) {
			return
		}
	}
}

// reloadOnce is the n-th reload, with the refused one before it if n is
// invalidAt: no upgrade may start while the invalid file is in place.
func (f *faults) reloadOnce(n int) bool {
	f.signalling.Lock()
	defer f.signalling.Unlock()
	if n == f.invalidAt && !f.reload(f.conf.renderInvalid(), false) {
		return false
	}
	return f.reload(f.conf.render(n%2), true)
}

// reload writes text, sends SIGHUP and waits for sluice to count the
// reload as accepted or refused; false means sluice is gone or stuck. The
// caller holds f.signalling.
func (f *faults) reload(text string, valid bool) bool {
	f.mu.Lock()
	cur, counted := f.sluice, f.counted
	wantOK, wantRefused := f.reloads-counted.reloads, f.refused-counted.refused
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
	if err := cur.Signal(syscall.SIGHUP); err != nil {
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
				f.problem("reload: sluice %d counts %d accepted and %d refused, expected %d and %d", cur.Pid, ok, refused, wantOK, wantRefused)
				return false
			}
			if ok == wantOK && refused == wantRefused {
				f.mu.Lock()
				f.reloads, f.refused = counted.reloads+ok, counted.refused+refused
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
