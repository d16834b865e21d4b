package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"sluice/bench/internal/proc"
)

// The fleet's addresses, all on loopback: each hop has its own, so that
// the address a backend sees says which hop it came from.
const (
	clientIP   = "127.0.0.99" // the client's source address: "the real client address"
	lbIP       = "127.0.0.10" // HAProxy's frontend and its source towards sluice
	serverName = "fleet.test" // the certificate's name, all instances share it
)

func instanceIP(n int) string { return fmt.Sprintf("127.0.0.%d", 10+n) }
func backendIP(n int) string  { return fmt.Sprintf("127.0.0.%d", 20+n) }

// fleet is one run: what it started and what it found.
type fleet struct {
	opts      options
	out       io.Writer // the PASS and FAIL lines, the summary
	log       *slog.Logger
	dir       string
	bin       string // sluice, copied into dir
	version   string // sluice -version
	lbVersion string // haproxy -v

	sharedKeys string   // one session_ticket_keys file for all
	ownKeys    []string // a file each, for the negative control
	ticketsErr error    // why this sluice cannot take session_ticket_keys

	seen     *sightings
	backends []*backend
	insts    []*instance
	lb       *haproxy
	client   *client
	results  []result
}

func runFleet(ctx context.Context, opts options, stdout, stderr io.Writer) error {
	start := time.Now()
	f := &fleet{opts: opts, out: stdout, log: slog.New(slog.NewTextHandler(stderr, nil)),
		seen: &sightings{bySrc: map[string][]sighting{}}}
	if err := proc.BecomeSubreaper(); err != nil {
		f.log.Warn("replaced sluice processes will not be reaped here", "error", err)
	}
	if opts.breakWhat != "" {
		fmt.Fprintf(stdout, "fleet: -break %s: %s\n", opts.breakWhat, breakable[opts.breakWhat])
	}
	err := f.setup(ctx)
	if err == nil {
		f.checks(ctx)
	}
	f.results = append(f.results, f.teardown())
	pass := err == nil
	for _, r := range f.results {
		pass = pass && r.pass
	}
	f.summary(stdout, time.Since(start), err)
	if f.dir != "" {
		if pass && !opts.keep {
			os.RemoveAll(f.dir)
		} else {
			fmt.Fprintf(stdout, "work directory (sluice-N.log, sluice-N.toml, backend-N.log, haproxy.log, haproxy.cfg): %s\n", f.dir)
		}
	}
	switch {
	case err != nil:
		return err
	case !pass:
		return fmt.Errorf("a check failed")
	}
	return nil
}

// setup makes the work directory, the certificate and the ticket keys,
// and starts the backends, the three sluice instances and HAProxy.
func (f *fleet) setup(ctx context.Context) error {
	var err error
	if f.dir, err = os.MkdirTemp("", "sluice-fleet-"); err != nil {
		return fmt.Errorf("make work directory: %w", err)
	}
	// An upgrade re-executes the file sluice was started from: a copy of
	// its own, so that a rebuild of bin/sluice meanwhile changes nothing.
	f.bin = filepath.Join(f.dir, "sluice")
	if err := copyFile(f.opts.sluice, f.bin); err != nil {
		return err
	}
	if out, err := exec.Command(f.bin, "-version").Output(); err == nil {
		f.version = strings.TrimSpace(string(out))
	}
	cert, key := filepath.Join(f.dir, "fleet.pem"), filepath.Join(f.dir, "fleet.key")
	if out, err := exec.Command(f.bin, "cert", "-names", serverName, "-cert", cert, "-key", key).CombinedOutput(); err != nil {
		return fmt.Errorf("sluice cert: %v: %s", err, out)
	}
	f.makeTicketKeys()
	for n := 1; n <= 3; n++ {
		b, err := startBackend(n, backendIP(n)+":0", filepath.Join(f.dir, fmt.Sprintf("backend-%d.log", n)), f.seen)
		if err != nil {
			return err
		}
		f.backends = append(f.backends, b)
	}
	for n := 1; n <= 3; n++ {
		in := &instance{
			n: n, ip: instanceIP(n), backend: f.backends[n-1].addr(), bin: f.bin,
			conf: filepath.Join(f.dir, fmt.Sprintf("sluice-%d.toml", n)), logPath: filepath.Join(f.dir, fmt.Sprintf("sluice-%d.log", n)),
			cert: cert, key: key, ticketKeys: f.sharedKeys, drain: f.opts.duration + 30*time.Second,
			acceptProxy: f.opts.breakWhat != "proxy",
		}
		switch f.opts.breakWhat {
		case "tickets":
			in.ticketKeys = f.ownKeys[n-1]
		case "drain":
			in.drain = time.Second
		}
		f.insts = append(f.insts, in)
		if err := in.start(ctx); err != nil {
			return err
		}
	}
	f.lb = &haproxy{bin: f.opts.haproxy, cfgPath: filepath.Join(f.dir, "haproxy.cfg"), sock: filepath.Join(f.dir, "haproxy.sock"),
		logPath: filepath.Join(f.dir, "haproxy.log"), sendProxy: f.opts.breakWhat != "proxy", redispatch: f.opts.breakWhat != "redispatch"}
	if out, err := exec.Command(f.opts.haproxy, "-v").Output(); err == nil {
		// "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/"
		if v := strings.Fields(string(out)); len(v) >= 3 {
			f.lbVersion = "HAProxy " + v[2]
		}
	}
	if err := f.lb.start(ctx, f.insts); err != nil {
		return err
	}
	if f.client, err = newClient(f.lb.addr, clientIP, cert, serverName); err != nil {
		return err
	}
	pids := make([]string, len(f.insts))
	for i, in := range f.insts {
		pids[i] = fmt.Sprintf("s%d %s pid %d", in.n, in.addr, in.cur.Pid)
	}
	f.log.Info("fleet is up", "dir", f.dir, "haproxy", f.lb.addr, "haproxy_pid", f.lb.proc.Pid, "sluice", strings.Join(pids, ", "))
	return nil
}

// makeTicketKeys writes the key files with `sluice ticket-key`: one
// shared, and one per instance. A sluice without the command cannot read
// them either; the instances then run without, and check 2 says so.
func (f *fleet) makeTicketKeys() {
	key := func(path string) error {
		out, err := exec.Command(f.bin, "ticket-key").CombinedOutput()
		if err != nil {
			return fmt.Errorf("sluice ticket-key: %v: %s", err, strings.TrimSpace(string(out)))
		}
		text := "# session ticket keys for the fleet, from sluice ticket-key\n" + string(out)
		return os.WriteFile(path, []byte(text), 0o600)
	}
	shared := filepath.Join(f.dir, "tickets.keys")
	if f.ticketsErr = key(shared); f.ticketsErr != nil {
		return
	}
	own := make([]string, 3)
	for i := range own {
		own[i] = filepath.Join(f.dir, fmt.Sprintf("tickets-%d.keys", i+1))
		if f.ticketsErr = key(own[i]); f.ticketsErr != nil {
			return
		}
	}
	f.sharedKeys, f.ownKeys = shared, own
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("read sluice binary: %w", err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		return fmt.Errorf("copy sluice binary: %w", err)
	}
	return nil
}

// checks runs the four checks in order, each printed as it ends.
func (f *fleet) checks(ctx context.Context) {
	for _, check := range []func(context.Context) result{f.checkClientAddr, f.checkResumption, f.checkRolling, f.checkKill} {
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		r := check(ctx)
		r.took = time.Since(start)
		r.print(f.out)
		f.results = append(f.results, r)
	}
}

// teardown stops everything by PID: the sluice processes with SIGTERM
// (each that was not killed must exit 0), HAProxy, the backends; then no
// child of this program may be left.
func (f *fleet) teardown() result {
	r := result{n: 5, name: "shutdown, nothing left"}
	var stopped []string
	for _, in := range f.insts {
		for _, p := range append(in.olds, in.cur) {
			if p == nil || !p.Alive() {
				continue // a replaced or killed process, judged by its check
			}
			if err := p.Stop(15 * time.Second); err != nil {
				r.fail("sluice %d (pid %d) on SIGTERM: %v", in.n, p.Pid, err)
			}
			stopped = append(stopped, fmt.Sprint(p.Pid))
		}
	}
	if f.lb != nil && f.lb.proc != nil {
		if err := f.lb.proc.Stop(10 * time.Second); err != nil && !strings.Contains(err.Error(), "signal: terminated") {
			r.fail("haproxy (pid %d) on SIGTERM: %v", f.lb.proc.Pid, err)
		}
		stopped = append(stopped, fmt.Sprint(f.lb.proc.Pid))
	}
	for _, b := range f.backends {
		b.close()
	}
	var left []string
	for range 20 {
		if left = proc.Children(); len(left) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, k := range left {
		r.fail("child process left: %s", k)
	}
	r.summary = fmt.Sprintf("stopped by PID: %s; child processes left: %d", strings.Join(stopped, " "), len(left))
	r.key = fmt.Sprintf("%d child processes left", len(left))
	r.pass = len(r.details) == 0
	r.print(f.out)
	return r
}
