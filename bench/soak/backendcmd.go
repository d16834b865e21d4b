package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// runBackend is `soak backend`: one backend process, which the controller
// starts, SIGKILLs and restarts on the same address. It prints "ready
// <pid>" once it listens, then one verdict line per stream; on SIGTERM
// (ctx) it stops accepting, waits for its streams, and exits.
func runBackend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("soak backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("listen", "127.0.0.1:0", "address to listen on")
	certFile := fs.String("cert", "", "PEM certificate: terminate TLS with it (passthrough backends)")
	keyFile := fs.String("key", "", "PEM key of -cert")
	timeout := fs.Duration("timeout", 2*time.Minute, "bound on each connection's life")
	if err := fs.Parse(args); err != nil {
		return err
	}
	srv := &backendServer{Timeout: *timeout, PID: os.Getpid()}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("load backend certificate: %w", err)
		}
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	var mu sync.Mutex
	srv.Emit = func(v verdict) {
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(stdout, v.line())
	}
	ln, err := listenAborting(ctx, *addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *addr, err)
	}
	fmt.Fprintf(stdout, "ready %d\n", srv.PID)
	served := make(chan error, 1)
	go serveBackend(srv, ln, served)
	<-ctx.Done()
	ln.Close()
	if err := <-served; err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := srv.Wait(wctx); err != nil {
		return fmt.Errorf("wait for streams: %w", err)
	}
	return nil
}

// listenAborting listens with SO_LINGER 0 on the listening socket, which
// Linux copies to every socket it accepts from the moment the handshake
// completes, so that when the backend is SIGKILLed the kernel closes each
// of its streams with a RST. Without it the kernel would send a FIN,
// which is exactly what a backend that finished its stream sends, and no
// proxy could tell the two apart; the soak checks that sluice passes an
// abort on as an abort, which is what it can promise. Set on each
// accepted socket instead, it left the moment between the accept and the
// setting open, and one CI soak saw a stream cut short there, cleanly,
// before its ack.
func listenAborting(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: setLingerZero}
	return lc.Listen(ctx, "tcp", addr)
}

func setLingerZero(_, _ string, rc syscall.RawConn) error {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		err = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	})
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("set SO_LINGER 0: %w", err)
	}
	return nil
}

func serveBackend(srv *backendServer, ln net.Listener, served chan<- error) {
	served <- srv.Serve(ln)
}
