package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"sluice/bench/internal/proc"
)

// options are the controller's flags.
type options struct {
	sluice        string
	duration      time.Duration
	workers       int
	killEvery     time.Duration
	restartAfter  time.Duration
	reloadEvery   time.Duration
	upgradeEvery  time.Duration
	streamTimeout time.Duration
	settle        time.Duration
	jsonPath      string
	seed          uint64
	keep          bool
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.sluice, "sluice", "bin/sluice", "the sluice binary to test")
	fs.DurationVar(&o.duration, "duration", 2*time.Minute, "how long new streams are started")
	fs.IntVar(&o.workers, "streams", 300, "concurrent streams (workers running streams back to back)")
	fs.DurationVar(&o.killEvery, "kill-every", 3*time.Second, "SIGKILL a random backend this often")
	fs.DurationVar(&o.restartAfter, "restart-after", time.Second, "restart a killed backend after this")
	fs.DurationVar(&o.reloadEvery, "reload-every", 2*time.Second, "rewrite sluice's configuration and SIGHUP it this often")
	fs.DurationVar(&o.upgradeEvery, "upgrade-every", 7*time.Second, "upgrade sluice (SIGUSR2: a new process takes the listeners and connections over) this often; 0: never")
	fs.DurationVar(&o.streamTimeout, "stream-timeout", time.Minute, "bound on one stream; a stream that takes longer is a hang")
	fs.DurationVar(&o.settle, "settle", 30*time.Second, "bound on waiting for sluice's goroutines and fds to return to baseline")
	fs.StringVar(&o.jsonPath, "json", "", "also write the report as JSON to this file")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed (0: from the clock); printed, so a run can be repeated")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, config) even when the soak passes")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	if o.workers < 1 || o.duration <= 0 {
		return o, errors.New("-streams and -duration must be positive")
	}
	if o.upgradeEvery < 0 {
		return o, errors.New("-upgrade-every must not be negative")
	}
	return o, nil
}

// soak is one run: the processes it started and what it learnt.
type soak struct {
	opts     options
	log      *slog.Logger
	dir      string
	conf     sluiceConf
	confPath string
	logPath  string
	sluice   *proc.Proc
	backends []*backendProc
	scrape   *scraper
	verdicts *verdicts
	work     *workload
	rep      report
}

func runController(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	// The runtime's network poller (an epoll fd and an eventfd, held for
	// the process's life) starts with the first socket; start it before
	// the baseline, so that only what the run leaves behind counts.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	selfBase := selfUsage()
	// An upgrade's new sluice is the old one's child; once the old one
	// exits it becomes the soak's, which can then learn how it exits.
	subreaper := proc.BecomeSubreaper()
	s := &soak{
		opts:     opts,
		log:      slog.New(slog.NewTextHandler(stderr, nil)),
		verdicts: &verdicts{byID: map[uint64]verdict{}},
	}
	s.rep.SelfBase = selfBase
	s.rep.Duration, s.rep.Workers = opts.duration.String(), opts.workers
	s.log.Info("soak starting", "seed", opts.seed, "duration", opts.duration, "streams", opts.workers)
	if subreaper != nil {
		s.log.Warn("the exit status of upgraded sluice processes will be unknown", "error", subreaper)
	}
	err = s.run(ctx)
	s.teardown()
	if err != nil {
		s.rep.Problems = append(s.rep.Problems, err.Error())
	}
	s.rep.SelfEnd = settleSelf(selfBase, 10*time.Second)
	if s.rep.SelfEnd.Goroutines > selfBase.Goroutines || s.rep.SelfEnd.FDs > selfBase.FDs {
		s.rep.Problems = append(s.rep.Problems, fmt.Sprintf("the soak itself leaked: goroutines %d -> %d, fds %d -> %d",
			selfBase.Goroutines, s.rep.SelfEnd.Goroutines, selfBase.FDs, s.rep.SelfEnd.FDs))
	}
	s.rep.decide()
	s.rep.print(stdout)
	if opts.jsonPath != "" {
		if err := s.rep.writeJSON(opts.jsonPath); err != nil {
			return err
		}
	}
	if s.dir != "" {
		if s.rep.Pass && !opts.keep {
			os.RemoveAll(s.dir)
		} else {
			fmt.Fprintf(stdout, "work directory (sluice.log, sluice.toml, backend-*.log): %s\n", s.dir)
		}
	}
	if !s.rep.Pass {
		return fmt.Errorf("soak failed (seed %d)", opts.seed)
	}
	return nil
}

// run does everything up to the report; an error is a soak that could not
// be carried out, not a finding.
func (s *soak) run(ctx context.Context) error {
	if err := s.setup(ctx); err != nil {
		return err
	}
	if err := s.warmUp(ctx); err != nil {
		return err
	}
	base, err := s.settleSluice(ctx, usage{Goroutines: 1 << 30, FDs: 1 << 30}, s.opts.settle)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	s.rep.SluiceBase = base
	s.log.Info("baseline", "goroutines", base.Goroutines, "fds", base.FDs, "pipes", base.Pipes)

	f := s.load(ctx)
	s.sluice = f.sluice // after upgrades, another process
	s.rep.Kills, s.rep.Restarts, s.rep.Reloads, s.rep.RefusedReloads = len(f.kills), f.restarts, f.reloads, f.refused
	s.rep.Upgrades = f.upgrades
	for _, u := range f.upgrades {
		s.rep.Moved += u.Moved
		s.rep.Staying += u.Staying
	}
	s.rep.Problems = append(s.rep.Problems, f.problems...)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	end, err := s.settleSluice(ctx, base, s.opts.settle)
	s.rep.SluiceEnd = end
	if err != nil {
		s.rep.Problems = append(s.rep.Problems, fmt.Sprintf("sluice did not return to its baseline within %v: %v", s.opts.settle, err))
	}
	// Backends first: their verdicts are complete once they have exited.
	for _, b := range s.backends {
		if err := b.stop(15 * time.Second); err != nil {
			s.rep.Problems = append(s.rep.Problems, err.Error())
		}
	}
	if err := s.sluice.Stop(20 * time.Second); err != nil {
		s.rep.SluiceExit = err.Error()
		s.rep.Problems = append(s.rep.Problems, fmt.Sprintf("sluice on SIGTERM: %v", err))
	} else {
		s.rep.SluiceExit = "0"
	}
	if s.rep.Log, err = scanLog(s.logPath); err != nil {
		return err
	}
	s.rep.judgeAll(s.work.snapshot(), s.verdicts, newJudge(f.kills))
	return nil
}

// setup writes certificates and the configuration, and starts the
// backends and sluice.
func (s *soak) setup(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "sluice-soak-")
	if err != nil {
		return fmt.Errorf("make work directory: %w", err)
	}
	s.dir = dir
	sluiceCert, err := newTestCert("localhost", "127.0.0.1")
	if err != nil {
		return err
	}
	backendCert, err := newTestCert("backend.soak")
	if err != nil {
		return err
	}
	s.conf.certFile, s.conf.keyFile, err = sluiceCert.write(dir, "sluice")
	if err != nil {
		return err
	}
	bCert, bKey, err := backendCert.write(dir, "backend")
	if err != nil {
		return err
	}
	addrs, err := freeAddrs(1 + 4 + 2*len(upstreamNames))
	if err != nil {
		return err
	}
	s.conf.admin = addrs[0]
	copy(s.conf.listeners[:], addrs[1:5])
	s.conf.upstreams = map[string][2]string{}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	for i, name := range upstreamNames {
		pair := [2]string{addrs[5+2*i], addrs[6+2*i]}
		s.conf.upstreams[name] = pair
		for j, addr := range pair {
			b := &backendProc{
				slot: 2*i + j, upstream: name, addr: addr, exe: exe, dir: dir,
				timeout: s.opts.streamTimeout + 10*time.Second,
				collect: s.verdicts.add, badLine: s.verdicts.bad,
			}
			if name == "pass" {
				b.args = []string{"-cert", bCert, "-key", bKey}
			}
			if _, err := b.start(ctx); err != nil {
				return err
			}
			s.backends = append(s.backends, b)
		}
	}
	s.confPath = filepath.Join(dir, "sluice.toml")
	s.logPath = filepath.Join(dir, "sluice.log")
	if err := writeConf(s.confPath, s.conf.render(0)); err != nil {
		return err
	}
	if s.sluice, err = proc.Start("sluice", s.opts.sluice, []string{"-config", s.confPath}, s.logPath); err != nil {
		return err
	}
	s.scrape = newScraper(s.conf.admin)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.scrape.ready(rctx); err != nil {
		return err
	}

	sessions := tls.NewLRUClientSessionCache(512)
	front := &tls.Config{RootCAs: sluiceCert.pool, ServerName: "localhost", ClientSessionCache: sessions}
	pass := &tls.Config{RootCAs: backendCert.pool, ServerName: "backend.soak", ClientSessionCache: sessions}
	s.work = &workload{timeout: s.opts.streamTimeout, targets: [numKinds]target{
		kindTerminate:   {addr: s.conf.listeners[0], tls: front},
		kindPlain:       {addr: s.conf.listeners[1]},
		kindPassthrough: {addr: s.conf.listeners[2], tls: pass},
		kindWebSocket:   {addr: s.conf.listeners[3], tls: front, ws: true},
		kindWSDefault:   {addr: s.conf.listeners[3], tls: front},
	}}
	s.log.Info("sluice is up", "dir", dir, "admin", s.conf.admin)
	return nil
}

// warmUp runs one stream of every kind and mode, before any fault: each
// must pass, or nothing later would mean much. It also brings sluice's
// pools to the state a baseline should see.
func (s *soak) warmUp(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(s.opts.seed, 0))
	for k := range numKinds {
		for m := range numModes {
			h := s.work.nextHeader(rng)
			h.Mode = m
			if res := s.work.one(ctx, k, h); res.Status != statusOK {
				return fmt.Errorf("warm-up stream %d (%s, %s) failed without any fault: %s %s", h.ID, k, m, res.Status, res.Cause)
			}
		}
	}
	return nil
}

// load runs the workers for the duration with faults injected, and
// returns once every stream has ended and the faults have stopped.
func (s *soak) load(ctx context.Context) *faults {
	stop, cancel := context.WithTimeout(ctx, s.opts.duration)
	defer cancel()
	f := &faults{
		backends: s.backends, sluice: s.sluice, scrape: s.scrape, conf: s.conf, confPath: s.confPath,
		logPath: s.logPath, sluiceComm: procComm(s.opts.sluice),
		killEvery: s.opts.killEvery, restartAfter: s.opts.restartAfter, reloadEvery: s.opts.reloadEvery,
		upgradeEvery: s.opts.upgradeEvery, invalidAt: 3, rng: rand.New(rand.NewPCG(s.opts.seed, 1)),
	}
	var fwg, wwg sync.WaitGroup
	fwg.Add(2)
	go runFault(f.killLoop, stop, &fwg)
	go runFault(f.reloadLoop, stop, &fwg)
	if f.upgradeEvery > 0 {
		fwg.Add(1)
		go runFault(f.upgradeLoop, stop, &fwg)
	}
	for i := range s.opts.workers {
		wwg.Add(1)
		go s.work.worker(stop, ctx, rand.New(rand.NewPCG(s.opts.seed, uint64(i)+2)), &wwg)
	}
	done := make(chan struct{})
	go waitGroup(&wwg, done)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-tick.C:
			f.mu.Lock()
			kills, reloads, upgrades := len(f.kills), f.reloads, len(f.upgrades)
			f.mu.Unlock()
			s.log.Info("progress", "streams", s.work.nextID.Load(), "active", s.work.active.Load(),
				"kills", kills, "reloads", reloads, "upgrades", upgrades)
		}
	}
	cancel()
	fwg.Wait()
	return f
}

func runFault(loop func(context.Context), ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	loop(ctx)
}

// settleSluice polls sluice's metrics until no connection is open and its
// goroutines and fds are at most base's, and returns the last reading.
// Idle pooled splice pipes (sluice_relay_pipes_open, at most 64, 2 fds
// each) are kept on purpose for reuse, so fds are compared net of them;
// the report shows both counts.
func (s *soak) settleSluice(ctx context.Context, base usage, bound time.Duration) (usage, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var last usage
	var why error
	for {
		m, err := s.scrape.scrape(ctx)
		if err == nil {
			last = m.usage()
			conns := m.sum["sluice_listener_connections"]
			inUse := m.sum["sluice_relay_pipes_in_use"] + m.sum["sluice_relay_buffers_in_use"]
			switch {
			case conns > 0 || inUse > 0:
				why = fmt.Errorf("%v connections open, %v pipes and buffers in use", conns, inUse)
			case last.Goroutines > base.Goroutines:
				why = fmt.Errorf("goroutines %d > %d", last.Goroutines, base.Goroutines)
			case last.FDs-2*last.Pipes > base.FDs-2*base.Pipes:
				why = fmt.Errorf("fds %d (of which %d pooled pipes) > %d (of which %d)", last.FDs, 2*last.Pipes, base.FDs, 2*base.Pipes)
			default:
				return last, nil
			}
		} else {
			why = err
		}
		select {
		case <-ctx.Done():
			return last, why
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// settleSelf polls the controller's own goroutines and fds until they are
// back to base or bound passes.
func settleSelf(base usage, bound time.Duration) usage {
	deadline := time.Now().Add(bound)
	for {
		u := selfUsage()
		if (u.Goroutines <= base.Goroutines && u.FDs <= base.FDs) || time.Now().After(deadline) {
			return u
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// teardown stops whatever is still running, by PID: after a failure or an
// interrupt, backends and sluice may be.
func (s *soak) teardown() {
	for _, b := range s.backends {
		b.stop(5 * time.Second)
	}
	if s.sluice != nil && s.sluice.Alive() {
		s.sluice.Stop(10 * time.Second)
	}
	if s.scrape != nil {
		s.scrape.close()
	}
}
