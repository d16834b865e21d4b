// Package admin serves sluice's operator endpoints on their own
// listener: Prometheus metrics, liveness and readiness for load balancers
// and Kubernetes probes, and, when asked for, Go's profiler.
//
//	/metrics        the Prometheus text format
//	/healthz        200 while the process runs
//	/readyz         200 when Ready says so, 503 otherwise (draining, handing over)
//	/debug/pprof/   net/http/pprof, only with PProf
//
// It knows nothing of listeners or routes: the process injects what to
// write and how to tell readiness.
package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Timeouts of the admin listener's connections. A scrape or a probe is
// one small request; a CPU profile streams for as long as it was asked to
// run, so writes have no deadline.
const (
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 8 << 10
)

// Server serves the admin endpoints. Metrics and Ready must be set.
type Server struct {
	// Metrics writes every metric in the Prometheus text format.
	Metrics func(w io.Writer)
	// Ready returns nil when the process should receive traffic, and
	// otherwise why not ("draining").
	Ready func() error
	// PProf serves net/http/pprof under /debug/pprof/; SetPProf changes
	// it while the server runs.
	PProf  bool
	Logger *slog.Logger // nil: discard

	once  sync.Once
	srv   *http.Server
	pprof atomic.Bool
}

// SetPProf turns /debug/pprof/ on or off.
func (s *Server) SetPProf(on bool) { s.pprof.Store(on) }

// Handler returns the endpoints' handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", s.metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("/debug/pprof/", s.whenPProf(pprof.Index))
	mux.Handle("/debug/pprof/cmdline", s.whenPProf(pprof.Cmdline))
	mux.Handle("/debug/pprof/profile", s.whenPProf(pprof.Profile))
	mux.Handle("/debug/pprof/symbol", s.whenPProf(pprof.Symbol))
	mux.Handle("/debug/pprof/trace", s.whenPProf(pprof.Trace))
	return mux
}

// whenPProf serves h only while pprof is on, and 404 otherwise.
func (s *Server) whenPProf(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.pprof.Load() {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	})
}

func (s *Server) metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriterSize(w, 32<<10)
	s.Metrics(bw)
	bw.Flush()
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := s.Ready(); err != nil {
		text(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	text(w, http.StatusOK, "ready")
}

// text answers msg. Sluice-Pid says which process answered: during a
// binary upgrade, two share the admin socket for a moment.
func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Sluice-Pid", strconv.Itoa(os.Getpid()))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

func (s *Server) init() {
	s.once.Do(func() {
		logger := s.Logger
		if logger == nil {
			logger = slog.New(slog.DiscardHandler)
		}
		s.pprof.Store(s.PProf)
		s.srv = &http.Server{
			Handler:           s.Handler(),
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		}
	})
}

// Serve serves on ln until Shutdown, and closes ln; it returns nil after
// Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}

// Shutdown stops the server, waiting for requests in progress until ctx
// is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	return s.srv.Shutdown(ctx)
}

// Listen opens the admin listener: "host:port" or "unix:/path". A stale
// socket file left by a process that is gone is replaced.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		ln, err := lc.Listen(ctx, "unix", path)
		if err != nil && errors.Is(err, syscall.EADDRINUSE) {
			if c, derr := net.Dial("unix", path); derr == nil {
				c.Close()
				return nil, err // someone serves there
			}
			os.Remove(path)
			ln, err = lc.Listen(ctx, "unix", path)
		}
		return ln, err
	}
	return lc.Listen(ctx, "tcp", addr)
}

// CheckAddress reports whether addr is one Listen can take.
func CheckAddress(addr string) error {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return errors.New(`"unix:" needs a socket path, as in "unix:/run/sluice/admin.sock"`)
		}
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf(`%q: want "host:port" or "unix:/path": %w`, addr, err)
	}
	if port == "" {
		return fmt.Errorf("%q: no port", addr)
	}
	return nil
}
