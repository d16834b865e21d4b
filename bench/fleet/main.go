// Command fleet runs sluice as a fleet: three sluice processes, each on
// its own loopback address, behind a real HAProxy in `mode tcp` that sends
// them PROXY v2 headers and health-checks each one's /readyz, and backends
// (in this process) that read the PROXY v2 header sluice sends on and log
// the client address in it. The client connects from its own address, so
// the three hops' addresses are told apart:
//
//	client 127.0.0.99 → HAProxy 127.0.0.10 → sluice 127.0.0.11-13 → backend 127.0.0.21-23
//
// It checks, each with a PASS or FAIL line and its figures:
//
//  1. client address: every backend sees the client's own address and
//     port, through both hops, and every instance serves some of them;
//  2. resumption across instances: with one session_ticket_keys file for
//     all three, a TLS 1.3 and a TLS 1.2 session resume on the other
//     instances; with a file each (the negative control) they do not,
//     while they still resume on the instance that issued the ticket;
//  3. rolling reload and upgrade: under continuous load (new connections
//     at -rate, half of them resumed, and -held long-lived ones echoing),
//     each instance in turn is reloaded (SIGHUP) and upgraded (SIGUSR2);
//     no connection and no echo may fail, and each replaced process must
//     exit 0 once the long-lived connections it kept (TLS that crypto/tls
//     runs does not move) are closed;
//  4. an instance killed outright (SIGKILL): its own long-lived
//     connections end, those on the other instances echo on, and no new
//     connection fails (HAProxy redispatches, its health check takes the
//     instance out).
//
// Then everything is stopped by PID and no child process may be left. It
// exits 1 on any FAIL. -break makes one check fail on purpose, to show
// that it can.
//
// The work directory (configurations, every process's log, each
// backend's log of the addresses it saw) is kept when a check fails, or
// with -keep.
//
//	fleet [-sluice bin/sluice] [-haproxy haproxy] [-duration 20s] [-kill-duration 8s] [-rate 40] [-held 24] [-conns 30] [-keep] [-break proxy|tickets|drain|redispatch]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	sluice       string
	haproxy      string
	duration     time.Duration // check 3's load
	killDuration time.Duration // check 4's load
	rate         float64       // new connections per second under load
	held         int           // long-lived connections under load
	addrConns    int           // check 1's connections
	keep         bool
	breakWhat    string
}

// What -break can break, each to make one check fail.
var breakable = map[string]string{
	"proxy":      "HAProxy sends no PROXY header and sluice accepts none: check 1 must FAIL",
	"tickets":    "every instance gets its own ticket key file, also where they should share one: check 2 must FAIL",
	"drain":      "drain_timeout = \"1s\": a replaced process cuts its long-lived connections: check 3 must FAIL",
	"redispatch": "HAProxy retries on the same server, without option redispatch: check 4 must FAIL",
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.sluice, "sluice", "bin/sluice", "the sluice binary (copied into the work directory, which upgrades then re-execute)")
	fs.StringVar(&o.haproxy, "haproxy", "haproxy", "the HAProxy binary")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "check 3: how long the load runs while each instance is reloaded and upgraded in turn")
	fs.DurationVar(&o.killDuration, "kill-duration", 8*time.Second, "check 4: how long the load runs around the kill")
	fs.Float64Var(&o.rate, "rate", 40, "new connections per second under load")
	fs.IntVar(&o.held, "held", 24, "long-lived connections under load, each echoing every 250ms")
	fs.IntVar(&o.addrConns, "conns", 30, "check 1: connections whose client address the backends must see")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configurations, logs) even when every check passes")
	fs.StringVar(&o.breakWhat, "break", "", "break one thing on purpose to see a check fail: proxy, tickets, drain or redispatch")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.duration < 6*time.Second || o.killDuration < 4*time.Second {
		return o, errors.New("-duration must be at least 6s and -kill-duration at least 4s")
	}
	if o.rate <= 0 || o.held < 3 || o.addrConns < 3 {
		return o, errors.New("-rate must be positive, -held and -conns at least 3")
	}
	if _, ok := breakable[o.breakWhat]; o.breakWhat != "" && !ok {
		return o, fmt.Errorf("-break %q: expected proxy, tickets, drain or redispatch", o.breakWhat)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	return runFleet(ctx, opts, stdout, stderr)
}
