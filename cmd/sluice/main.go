// Command sluice terminates TLS at layer 4 and relays the decrypted stream
// to backend pools, with PROXY protocol both ways.
//
//	sluice [-config FILE]               serve
//	sluice -check [-v] [-config FILE]   validate the configuration and exit 0 or 1
//	sluice -version
//	sluice demo-backend [-listen ADDR] [-proxy]
//	sluice cert -names NAMES -cert FILE -key FILE [-days N] [-force]
//	sluice ticket-key
//
// "sluice -h" lists every command and flag (usage.go).
//
// Signals: SIGTERM and SIGINT drain and exit (a second one cuts the drain
// short); SIGHUP reloads the whole configuration file in place.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"sluice/handover"
	"sluice/l4"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2)
	if err := run(os.Args[1:], os.Stdout, os.Stderr, sigs); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			// -h asked for the usage, which is printed: not a failure.
			os.Exit(0)
		}
		for _, e := range flatten(err) {
			fmt.Fprintln(os.Stderr, "sluice:", e)
		}
		os.Exit(1)
	}
}

// run is the whole program; main only supplies the process's arguments,
// output and signals.
func run(args []string, stdout, stderr io.Writer, sigs <-chan os.Signal) error {
	switch {
	case len(args) > 0 && args[0] == "demo-backend":
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			for s := range sigs {
				if s != syscall.SIGHUP && s != syscall.SIGUSR2 {
					cancel()
					return
				}
			}
		}()
		logger := slog.New(slog.NewTextHandler(stderr, nil))
		return runDemoBackend(ctx, args[1:], stdout, logger)
	case len(args) > 0 && args[0] == "cert":
		return runCert(args[1:], stdout, stderr, time.Now())
	case len(args) > 0 && args[0] == "ticket-key":
		return runTicketKey(args[1:], stdout, nil)
	}

	var o options
	fs := newFlagSet(&o, stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (subcommands: demo-backend, cert, ticket-key; see sluice -h)", fs.Arg(0))
	}
	if o.verbose && !o.check {
		return errors.New("-v works with -check only: sluice -check -v -config FILE")
	}
	if o.version {
		fmt.Fprintln(stdout, "sluice", version)
		return nil
	}

	cfg, lines, err := loadConfig(o.config)
	if err != nil {
		return err
	}
	lg := newLogger(stderr, cfg.Log)
	logger := lg.logger
	// Write out the last lines ("sluice stopped") before returning, but
	// never hang on an output that is stalled: the lines are lost anyway.
	defer lg.queue.Close(logFlushTimeout)
	proxy, err := l4.New(cfg, logger)
	if err == nil {
		err = checkAdmin(cfg.Admin)
	}
	if err != nil {
		return locate(o.config, lines, err)
	}
	if o.check {
		if o.verbose {
			if err := describe(stdout, cfg, time.Now()); err != nil {
				return locate(o.config, lines, err)
			}
		}
		fmt.Fprintf(stdout, "sluice: configuration file %s is ok\n", o.config)
		return nil
	}
	// GOGC, when set, wins over gc_percent and its tuning.
	var gc *gcPolicy
	if os.Getenv("GOGC") == "" {
		gc = newGCPolicy(cfg.GCPercentOrDefault(), nil, nil)
		defer gc.stop()
	}
	// Sockets handed over by an old process (a binary upgrade) are taken
	// rather than bound.
	inherited, ready, err := handover.Inherited()
	if err != nil {
		return err
	}
	upgraded := inherited != nil
	// Sockets systemd opened (socket activation), by listener name.
	fromSystemd, err := activated(cfg)
	if err != nil {
		return err
	}
	for addr, f := range fromSystemd {
		if inherited == nil {
			inherited = make(map[string]*os.File)
		}
		if inherited[addr] == nil {
			inherited[addr] = f
		} else {
			f.Close()
		}
	}
	adminSocket := takeAdminFile(inherited, cfg.Admin)
	proxy.Inherit(inherited)
	// A listen error (address in use, permission) names its address key:
	// point at it in the file like the other configuration errors.
	if err := proxy.Listen(context.Background()); err != nil {
		return locate(o.config, lines, err)
	}
	obs := newObserver(proxy, logger, time.Now())
	if err := obs.startAdmin(cfg.Admin, adminSocket); err != nil {
		proxy.Shutdown(context.Background())
		return locate(o.config, lines, err)
	}
	defer obs.stopAdmin()
	exe, err := os.Executable()
	if err != nil {
		lg.logger.Warn("binary upgrade unavailable: own executable unknown", "error", err)
	}
	r := &running{path: o.config, cfg: cfg, logs: lg, obs: obs, ready: ready, upgraded: upgraded,
		gc: gc, notify: newNotifier(), exe: exe, args: args, stdout: stdout, stderr: stderr}
	return serve(proxy, r, sigs)
}

// options are the serving command's flags.
type options struct {
	config  string
	check   bool
	verbose bool
	version bool
}

// newFlagSet defines the serving command's flags on a new flag set whose
// errors and usage (every command and flag, see writeUsage) go to out.
func newFlagSet(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.config, "config", "/etc/sluice/sluice.toml", "configuration `file`")
	fs.BoolVar(&o.check, "check", false, "check the configuration (syntax, values, certificates and keys) and exit")
	fs.BoolVar(&o.verbose, "v", false, "with -check: print each listener with its certificates and routes, and each upstream")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.Usage = func() { writeUsage(out, fs) }
	return fs
}

// running is what a reload changes beside the proxy, and what an upgrade
// starts the new process with.
type running struct {
	path string
	cfg  *l4.Config
	logs *logs
	obs  *observer
	// ready tells an old process that handed its sockets over that this
	// one serves (a no-op otherwise); upgraded says there was one.
	ready          func() error
	upgraded       bool
	gc             *gcPolicy // nil when GOGC is set
	notify         *notifier
	exe            string
	args           []string
	stdout, stderr io.Writer
}

// serve runs the proxy, whose listeners are open, until a stop signal and
// a drain. SIGHUP reloads the configuration file.
func serve(proxy *l4.Proxy, r *running, sigs <-chan os.Signal) error {
	logger := r.logs.logger
	served := make(chan error, 1)
	go func() { served <- proxy.Serve() }()
	trimCtx, stopTrim := context.WithCancel(context.Background())
	trimDone := make(chan struct{})
	go func() {
		defer close(trimDone)
		(&trimmer{logger: logger, conns: proxy.Active, trimmed: r.obs.trims.Inc}).run(trimCtx)
	}()
	defer func() {
		stopTrim()
		<-trimDone
	}()
	r.obs.ready.Store(true)
	logger.Info("sluice started", "version", version, "pid", os.Getpid())
	// systemd first: the old process of an upgrade exits once told, and
	// this one must be the service's main process by then.
	ready := []string{"READY=1", r.status(proxy)}
	if r.upgraded {
		ready = append(ready, fmt.Sprintf("MAINPID=%d", os.Getpid()))
	}
	if err := r.notify.send(ready...); err != nil {
		logger.Warn("systemd notification failed", "error", err)
	}
	if err := r.ready(); err != nil {
		logger.Warn("could not tell the old process this one is ready", "error", err)
	}
	if conns := handover.ConnsInherited(); conns != nil {
		// The old process moves its connections once it hears ready.
		go receiveConns(proxy, conns, logger)
	}
	status := time.NewTicker(10 * time.Second)
	defer status.Stop()

	for {
		select {
		case <-status.C:
			r.notify.send(r.status(proxy))
		case err := <-served:
			// A listener failed for good: drain the rest too, and exit
			// non-zero so a supervisor restarts us.
			ctx, cancel := context.WithTimeout(context.Background(), r.cfg.DrainTimeoutOrDefault())
			proxy.Shutdown(ctx)
			cancel()
			return err
		case s := <-sigs:
			if s == syscall.SIGHUP {
				r.notify.reloading()
				r.reload(proxy)
				r.notify.send("READY=1", r.status(proxy))
				continue
			}
			if s == syscall.SIGUSR2 {
				if r.exe != "" && r.upgrade(proxy) {
					return drain(proxy, r.cfg.DrainTimeoutOrDefault(), logger, sigs, served)
				}
				continue
			}
			r.obs.draining.Store(true)
			r.notify.send("STOPPING=1", fmt.Sprintf("STATUS=draining %d connections", proxy.Active()))
			graceWait(r.cfg.Grace.Duration, logger, sigs)
			return drain(proxy, r.cfg.DrainTimeoutOrDefault(), logger, sigs, served)
		}
	}
}

// graceWait keeps serving for grace after a stop signal, /readyz already
// saying 503, so that load balancers that poll it stop sending before the
// listeners close (HAProxy's grace). A second stop signal ends it.
func graceWait(grace time.Duration, logger *slog.Logger, sigs <-chan os.Signal) {
	if grace <= 0 {
		return
	}
	logger.Info("stop signal: not ready any more; accepting for the grace period before the drain", "grace", grace)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return
		case s := <-sigs:
			if s != syscall.SIGHUP && s != syscall.SIGUSR2 {
				logger.Warn("second stop signal: grace period cut short")
				return
			}
		}
	}
}

// status is the STATUS= line systemctl status shows.
func (r *running) status(proxy *l4.Proxy) string {
	return fmt.Sprintf("STATUS=serving %d connections", proxy.Active())
}

// drain shuts down gracefully: stop accepting, give live connections
// timeout to finish, then close them. A second stop signal ends the wait.
func drain(proxy *l4.Proxy, timeout time.Duration, logger *slog.Logger, sigs <-chan os.Signal, served <-chan error) error {
	logger.Info("shutting down: draining connections", "drain_timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		for {
			select {
			case s := <-sigs:
				if s != syscall.SIGHUP && s != syscall.SIGUSR2 {
					logger.Warn("second stop signal: closing connections now")
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := proxy.Shutdown(ctx); err != nil {
		logger.Warn("drain cut short; remaining connections closed", "error", err)
	}
	if err := <-served; err != nil {
		return err
	}
	logger.Info("sluice stopped")
	return nil
}
