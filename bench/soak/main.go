// Command soak is sluice's verified soak test. It starts sluice (-sluice)
// with a generated configuration of four listeners (TLS terminating, plain,
// passthrough, and TLS with a `websocket = true` route beside a default
// one), each upstream with two backend processes (itself, re-executed as
// `soak backend`), and runs -streams concurrent streams for -duration:
// random sizes both ways, half-closes from either side, while backends are
// SIGKILLed and restarted on their address, sluice is reloaded with
// SIGHUP (once with a file it must refuse), and sluice is upgraded with
// SIGUSR2 (-upgrade-every): a new process takes the listeners over, the
// old one moves its plain and passthrough connections to it and drains
// the rest, and from then on the new one is signalled. Both ends of every
// stream check its bytes with SHA-256; a failure is allowed only where the
// backend under the stream was killed, and only as a failure seen at the
// client (never a clean end with short or wrong bytes); a stream moved to
// a new process must verify like any other. An upgrade must finish within
// 20s and leave one sluice within the drain timeout, each old process
// exiting 0. At the end sluice's goroutines and fds must be back to their
// baseline, the soak's own too, and sluice must exit 0 on SIGTERM. It
// prints a report (and writes it as JSON with -json) and exits 1 on any
// finding.
//
//	soak [-sluice bin/sluice] [-duration 2m] [-streams 300] [-upgrade-every 7s] [-json FILE] [-seed N] [-keep]
//	soak backend -listen ADDR [-cert F -key K]   (run by the controller)
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "backend" {
		return runBackend(ctx, args[1:], stdout, stderr)
	}
	return runController(ctx, args, stdout, stderr)
}
