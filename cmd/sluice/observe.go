package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"sluice/admin"
	"sluice/l4"
)

// adminFileKey is the key of the admin listener's socket among those an
// upgrade hands over, beside the listeners' addresses.
const adminFileKey = "admin:"

// observer is what an operator sees of the process: its own metrics
// (reloads, readiness, memory trims, build), readiness, and the admin
// listener that serves them with the proxy's.
type observer struct {
	proxy  *l4.Proxy
	logger *slog.Logger

	set                  *metrics.Set
	reloadsOK, reloadsKO *metrics.Counter
	trims                *metrics.Counter
	lastReload           atomic.Int64 // Unix seconds of the last successful load
	ready, draining      atomic.Bool

	mu     sync.Mutex // guards the admin listener below
	cfg    l4.AdminConfig
	srv    *admin.Server
	ln     net.Listener
	served chan struct{} // closed when srv's Serve returns
}

func newObserver(proxy *l4.Proxy, logger *slog.Logger, now time.Time) *observer {
	// # HELP and # TYPE lines, so that Prometheus knows counters from
	// gauges; a switch of the library's, for the whole process.
	metrics.ExposeMetadata(true)
	o := &observer{proxy: proxy, logger: logger, set: metrics.NewSet()}
	o.reloadsOK = o.set.NewCounter(`sluice_reloads_total{result="success"}`)
	o.reloadsKO = o.set.NewCounter(`sluice_reloads_total{result="failure"}`)
	o.trims = o.set.NewCounter("sluice_memory_trims_total")
	o.lastReload.Store(now.Unix())
	o.set.NewGauge("sluice_last_reload_success_timestamp_seconds", func() float64 { return float64(o.lastReload.Load()) })
	o.set.NewGauge("sluice_draining", func() float64 { return boolFloat(o.draining.Load()) })
	o.set.NewGauge("sluice_ready", func() float64 { return boolFloat(o.readyErr() == nil) })
	o.set.NewGauge(fmt.Sprintf(`sluice_build_info{version=%q,goversion=%q}`, version, runtime.Version()),
		func() float64 { return 1 })
	return o
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// reloaded counts a reload and its result.
func (o *observer) reloaded(ok bool, now time.Time) {
	if !ok {
		o.reloadsKO.Inc()
		return
	}
	o.reloadsOK.Inc()
	o.lastReload.Store(now.Unix())
}

// readyErr says why the process should not receive traffic, or nil.
func (o *observer) readyErr() error {
	switch {
	case o.draining.Load():
		return errors.New("draining")
	case !o.ready.Load():
		return errors.New("starting")
	}
	return nil
}

// writeMetrics writes every metric: the proxy's, the process's own, and
// the Go runtime's and the OS's view of the process.
func (o *observer) writeMetrics(w io.Writer) {
	o.proxy.WriteMetrics(w)
	o.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
	metrics.WriteFDMetrics(w)
}

// checkAdmin checks the [admin] table; the error names its key.
func checkAdmin(cfg l4.AdminConfig) error {
	if cfg.Address == "" {
		if cfg.PProf {
			return &l4.FieldError{Path: "admin.pprof", Err: errors.New("needs admin.address: pprof is served on the admin listener")}
		}
		return nil
	}
	if err := admin.CheckAddress(cfg.Address); err != nil {
		return &l4.FieldError{Path: "admin.address", Err: err}
	}
	return nil
}

// startAdmin opens the admin listener of cfg, or takes the socket an old
// process handed over (inherited, which it closes), and serves on it.
func (o *observer) startAdmin(cfg l4.AdminConfig, inherited *os.File) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.startLocked(cfg, inherited)
}

func (o *observer) startLocked(cfg l4.AdminConfig, inherited *os.File) error {
	if cfg.Address == "" {
		if inherited != nil {
			inherited.Close()
		}
		return nil
	}
	var ln net.Listener
	var err error
	if inherited != nil {
		ln, err = net.FileListener(inherited)
		inherited.Close()
	} else {
		ln, err = admin.Listen(context.Background(), cfg.Address)
	}
	if err != nil {
		return &l4.FieldError{Path: "admin.address", Err: err}
	}
	srv := &admin.Server{Metrics: o.writeMetrics, Ready: o.readyErr, PProf: cfg.PProf, Logger: o.logger}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil {
			o.logger.Error("admin listener failed", "address", cfg.Address, "error", err)
		}
	}()
	o.cfg, o.srv, o.ln, o.served = cfg, srv, ln, served
	o.logger.Info("admin listener", "address", ln.Addr().String(), "pprof", cfg.PProf)
	return nil
}

// reconfigure puts a reloaded [admin] table to work: a new address is
// bound before the old one is let go, so that a bad one changes nothing.
func (o *observer) reconfigure(cfg l4.AdminConfig) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cfg == o.cfg {
		return nil
	}
	old, oldServed := o.srv, o.served
	if cfg.Address == o.cfg.Address && old != nil {
		// Same socket, other options: a new server on it would need the
		// old one's listener closed first, and probes refused meanwhile.
		old.SetPProf(cfg.PProf)
		o.cfg = cfg
		return nil
	}
	if err := o.startLocked(cfg, nil); err != nil {
		return err
	}
	if cfg.Address == "" {
		o.cfg, o.srv, o.ln, o.served = cfg, nil, nil, nil
	}
	if old != nil {
		stopServer(old, oldServed)
	}
	return nil
}

// adminFile returns a copy of the admin listener's socket for a new
// process, keyed for it, or nil if there is none.
func (o *observer) adminFile() (key string, f *os.File, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fl, ok := o.ln.(interface{ File() (*os.File, error) })
	if !ok { // no admin listener
		return "", nil, nil
	}
	f, err = fl.File()
	if err != nil {
		return "", nil, fmt.Errorf("admin listener: %w", err)
	}
	return adminFileKey + o.cfg.Address, f, nil
}

// handedOver lets the new process answer the admin listener's requests
// alone: this one stops serving them, and leaves a unix socket's file,
// which the new process serves, in place.
func (o *observer) handedOver() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ul, ok := o.ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	if o.srv != nil {
		stopServer(o.srv, o.served)
		o.srv, o.ln, o.served = nil, nil, nil
	}
}

// stopAdmin stops the admin listener, at exit.
func (o *observer) stopAdmin() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.srv != nil {
		stopServer(o.srv, o.served)
		o.srv, o.ln, o.served = nil, nil, nil
	}
}

// stopServer shuts srv down, giving requests in progress a moment.
func stopServer(srv *admin.Server, served chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	<-served
}

// takeAdminFile removes the admin listener's socket from the sockets an
// old process handed over, if it is the one cfg names, and closes any
// other admin socket there: the rest are the listeners'.
func takeAdminFile(inherited map[string]*os.File, cfg l4.AdminConfig) *os.File {
	var f *os.File
	for key, file := range inherited {
		addr, ok := strings.CutPrefix(key, adminFileKey)
		if !ok {
			continue
		}
		delete(inherited, key)
		if addr == cfg.Address && f == nil {
			f = file
		} else {
			file.Close()
		}
	}
	return f
}
