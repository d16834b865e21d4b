package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/pires/go-proxyproto"
)

const (
	demoDefaultListen      = "127.0.0.1:8081"
	demoReadHeaderTimeout  = 10 * time.Second
	demoProxyHeaderTimeout = 5 * time.Second
	demoIdleTimeout        = 60 * time.Second
	demoShutdownTimeout    = 5 * time.Second
	demoWSReadLimit        = 1 << 20 // 1 MiB
	demoWSWriteTimeout     = 10 * time.Second
)

// demoBackend is the configuration of the "sluice demo-backend" subcommand.
type demoBackend struct {
	listen string // address to listen on
	proxy  bool   // require a PROXY v1/v2 header on every connection
	stdout io.Writer
	logger *slog.Logger
}

// runDemoBackend runs the demo backend subcommand: args are the flags after
// "demo-backend" (-listen ADDR, default "127.0.0.1:8081"; -proxy to accept a
// PROXY v1/v2 header on every connection, as a backend behind send_proxy does).
// It serves until ctx is done, then shuts down gracefully, and returns nil.
// It writes its own log lines with logger.
func runDemoBackend(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	b, err := newDemoBackend(args, stdout, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", b.listen)
	if err != nil {
		return fmt.Errorf("demo-backend: %w", err)
	}
	return b.serve(ctx, ln)
}

// newDemoBackend parses the demo-backend flags. Flag errors (including
// flag.ErrHelp for -h) are returned after the flag package has printed them
// and the usage to stdout.
func newDemoBackend(args []string, stdout io.Writer, logger *slog.Logger) (*demoBackend, error) {
	if stdout == nil {
		stdout = io.Discard
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &demoBackend{stdout: stdout, logger: logger}
	fs := flag.NewFlagSet("demo-backend", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&b.listen, "listen", demoDefaultListen, "plain HTTP/WebSocket `address` to listen on")
	fs.BoolVar(&b.proxy, "proxy", false, "require a PROXY protocol v1/v2 header on every connection (backend behind send_proxy)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("demo-backend: unexpected arguments: %q", fs.Args())
	}
	return b, nil
}

// serve serves the demo backend on ln (which it takes ownership of) until
// ctx is done, then shuts down gracefully: in-flight HTTP requests are given
// demoShutdownTimeout to finish and open WebSockets are closed with 1001
// (going away). It returns nil after a clean shutdown.
func (b *demoBackend) serve(ctx context.Context, ln net.Listener) error {
	addr := ln.Addr().String()
	if b.proxy {
		ln = &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: demoProxyHeaderTimeout}
	}

	// shutdownCtx is cancelled when shutdown begins; hijacked WebSocket
	// connections watch it because http.Server.Shutdown does not track them.
	shutdownCtx, beginShutdown := context.WithCancel(context.Background())
	defer beginShutdown()
	s := &demoServer{logger: b.logger, proxy: b.proxy, shutdown: shutdownCtx}

	srv := &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: demoReadHeaderTimeout,
		IdleTimeout:       demoIdleTimeout,
		ErrorLog:          slog.NewLogLogger(b.logger.Handler(), slog.LevelWarn),
	}

	fmt.Fprintf(b.stdout, "demo backend listening on http://%s (ws://%s/echo)\n", addr, addr)
	b.logger.Info("demo backend started", "addr", addr, "proxy_protocol", b.proxy)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		// Serve failed on its own (e.g. the listener broke).
		beginShutdown()
		srv.Close()
		s.ws.closeAndWait()
		return fmt.Errorf("demo-backend: %w", err)
	case <-ctx.Done():
	}

	b.logger.Info("demo backend shutting down", "addr", addr)
	beginShutdown()
	sctx, cancel := context.WithTimeout(context.Background(), demoShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		b.logger.Warn("demo backend: graceful shutdown timed out, closing connections", "err", err)
		err = srv.Close()
	}
	s.ws.closeAndWait()
	if sErr := <-serveErr; !errors.Is(sErr, http.ErrServerClosed) && err == nil {
		err = sErr
	}
	if err != nil {
		return fmt.Errorf("demo-backend: shutdown: %w", err)
	}
	b.logger.Info("demo backend stopped", "addr", addr)
	return nil
}

// demoServer holds the per-serve state shared by the handlers.
type demoServer struct {
	logger   *slog.Logger
	proxy    bool
	shutdown context.Context // done once shutdown has begun
	ws       connTracker     // open WebSocket handlers
}

func (s *demoServer) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handleIndex)
	mux.HandleFunc("GET /echo", s.handleEcho)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok\n")
	})
	return mux
}

func (s *demoServer) handleIndex(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	data := struct {
		RemoteAddr, Host string
		Proxy            bool
	}{r.RemoteAddr, r.Host, s.proxy}
	if err := demoPage.Execute(w, data); err != nil {
		s.logger.Warn("demo backend: rendering page", "err", err, "remote", r.RemoteAddr)
	}
}

func (s *demoServer) handleEcho(w http.ResponseWriter, r *http.Request) {
	// Register before the upgrade: the request is still "active" for
	// http.Server.Shutdown until it is hijacked, so no handler can register
	// after Shutdown has returned and closeAndWait has started.
	if !s.ws.add() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.ws.done()

	// The Origin is the sluice host (https://...:8443), not this backend's
	// Host, so origin verification would reject every browser.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.logger.Warn("demo backend: websocket accept failed", "err", err, "remote", r.RemoteAddr)
		return // Accept has written the error response.
	}
	defer c.CloseNow()
	c.SetReadLimit(demoWSReadLimit)
	log := s.logger.With("remote", r.RemoteAddr)
	log.Info("websocket opened")

	// On shutdown, start the close handshake; the pending Read then fails.
	stop := context.AfterFunc(s.shutdown, func() {
		c.Close(websocket.StatusGoingAway, "server shutting down")
	})
	defer stop()

	// r.Context() is not cancelled when a hijacked connection goes away, so
	// only use it for its values; lifetime is driven by the connection.
	ctx := context.WithoutCancel(r.Context())
	msgs := 0
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			st := websocket.CloseStatus(err)
			if st == websocket.StatusNormalClosure || st == websocket.StatusGoingAway {
				log.Info("websocket closed", "status", st, "messages", msgs)
			} else {
				log.Info("websocket closed", "err", err, "shutdown", s.shutdown.Err() != nil, "messages", msgs)
			}
			return
		}
		wctx, cancel := context.WithTimeout(ctx, demoWSWriteTimeout)
		err = c.Write(wctx, typ, data)
		cancel()
		if err != nil {
			log.Info("websocket write failed", "err", err, "messages", msgs)
			return
		}
		msgs++
	}
}

// connTracker counts running handlers of hijacked connections so that
// shutdown can wait for them.
type connTracker struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// add registers a handler; it reports false once closeAndWait has been called.
func (t *connTracker) add() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *connTracker) done() { t.wg.Done() }

// closeAndWait refuses further handlers and waits for the registered ones.
func (t *connTracker) closeAndWait() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
}

var demoPage = template.Must(template.New("demo").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice demo</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; }
table { border-collapse: collapse; margin: 1rem 0; }
td, th { text-align: left; padding: .25rem .8rem .25rem 0; vertical-align: top; }
code { background: #f2f2f2; padding: .1rem .3rem; border-radius: 3px; }
.note { background: #eef6ee; border-left: 4px solid #4a4; padding: .5rem .8rem; }
.panel { border: 1px solid #ccc; border-radius: 6px; padding: .8rem 1rem; margin-top: 1.5rem; }
#state { font-weight: bold; }
.open { color: #282; } .closed { color: #b22; } .connecting { color: #a70; }
#log { font-family: ui-monospace, monospace; font-size: 13px; list-style: none; padding: 0; max-height: 18rem; overflow-y: auto; }
#log li { padding: .1rem 0; border-bottom: 1px solid #eee; }
form { display: flex; gap: .5rem; } input { flex: 1; padding: .3rem; }
</style>
</head>
<body>
<h1>sluice demo</h1>
<p>This page was served by the sluice demo backend over plain HTTP.</p>
<table>
<tr><th>Client address (as the backend sees it)</th><td><code id="remote">{{.RemoteAddr}}</code></td></tr>
<tr><th>Host</th><td><code>{{.Host}}</code></td></tr>
<tr><th>PROXY protocol</th><td>{{if .Proxy}}on: the address above comes from the PROXY header sent by sluice{{else}}off: the address above is the TCP peer (sluice itself when proxied){{end}}</td></tr>
</table>
<p class="note">If this page's URL starts with <code>https://</code>, TLS was terminated by sluice:
your browser spoke TLS to sluice, and sluice forwarded the decrypted bytes to this backend as plain TCP.</p>
<div class="panel">
<h2>WebSocket echo</h2>
<p>Endpoint: <code id="url"></code> &mdash; state: <span id="state" class="connecting">connecting</span>
<button id="reconnect" type="button" hidden>reconnect</button></p>
<form id="form"><input id="msg" autocomplete="off" placeholder="type a message" disabled><button id="send" disabled>send</button></form>
<ul id="log"></ul>
</div>
<script>
"use strict";
const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/echo";
const $ = (id) => document.getElementById(id);
$("url").textContent = url;
let ws = null, pending = [];
function setState(s) {
  $("state").textContent = s; $("state").className = s;
  const open = s === "open";
  $("msg").disabled = !open; $("send").disabled = !open; $("reconnect").hidden = s !== "closed";
}
function log(text) {
  const li = document.createElement("li"); li.textContent = text;
  $("log").appendChild(li); li.scrollIntoView({block: "nearest"});
}
function send(msg) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  pending.push(performance.now()); ws.send(msg); log("\u2192 " + msg);
}
function connect() {
  setState("connecting"); pending = [];
  ws = new WebSocket(url);
  ws.onopen = () => { setState("open"); log("connected to " + url); send("hello from the browser"); };
  ws.onmessage = (e) => {
    const t0 = pending.shift();
    const rtt = t0 === undefined ? "?" : (performance.now() - t0).toFixed(1);
    log("\u2190 " + e.data + "  (" + rtt + " ms)");
  };
  ws.onerror = () => log("websocket error");
  ws.onclose = (e) => { setState("closed"); log("closed: code " + e.code + (e.reason ? " (" + e.reason + ")" : "")); };
}
$("form").addEventListener("submit", (e) => { e.preventDefault(); const v = $("msg").value; if (v) { send(v); $("msg").value = ""; } });
$("reconnect").addEventListener("click", connect);
connect();
</script>
</body>
</html>
`))
