package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mainSafeBuffer is a bytes.Buffer safe for concurrent use, for the log
// output of a serving run.
type mainSafeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *mainSafeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *mainSafeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestRunVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-version"}, &stdout, &stderr, nil); err != nil {
		t.Fatal(err)
	}
	if got := stdout.String(); got != "sluice dev\n" {
		t.Errorf("stdout = %q, want %q", got, "sluice dev\n")
	}
}

func TestRunUnknownFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run([]string{"-chek"}, &stdout, &stderr, nil)
	if err == nil {
		t.Fatal("run accepted -chek")
	}
	if !strings.Contains(err.Error(), "-chek") {
		t.Errorf("error %q does not name the flag", err)
	}
	// The flag package prints the usage, which lists the real flags.
	if !strings.Contains(stderr.String(), "-check") {
		t.Errorf("stderr = %q, want the usage", stderr.String())
	}
}

func TestRunHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-h"}, &stdout, &stderr, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(stderr.String(), "-config") {
		t.Errorf("stderr = %q, want the usage", stderr.String())
	}
}

func TestRunExtraArgument(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run([]string{"-check", "-config", "x.toml", "extra"}, &stdout, &stderr, nil)
	if err == nil {
		t.Fatal("run accepted an extra argument")
	}
	if !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Errorf("error = %q, want it to name the argument", err)
	}
}

func TestRunMissingConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "none.toml")
	for _, args := range [][]string{{"-check", "-config", file}, {"-config", file}} {
		var stdout, stderr bytes.Buffer
		err := run(args, &stdout, &stderr, nil)
		if err == nil {
			t.Fatalf("run %q succeeded", args)
		}
		if !strings.Contains(err.Error(), file) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("run %q = %q, want a not-exist error naming %s", args, err, file)
		}
	}
}

// TestRunListenError checks that an address already in use is reported,
// before serving, at its line in the file.
func TestRunListenError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := writeConfig(t, `[[listener]]
name = "busy"
address = "`+busy.Addr().String()+`"
[[listener.route]]
upstream = "u"
[[upstream]]
name = "u"
servers = ["127.0.0.1:9"]
`)
	err = runFailing(t, file)
	want := file + ":3: listener[0].address: listen: "
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("run = %v, want an error containing %q and \"address already in use\"", err, want)
	}
}

// runFailing runs sluice on file, which must fail to start, and returns
// its error.
func runFailing(t *testing.T, file string) error {
	t.Helper()
	var stdout, stderr mainSafeBuffer
	done := make(chan error, 1)
	go func() { done <- run([]string{"-config", file}, &stdout, &stderr, nil) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("run returned nil; want a failed start")
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return")
		return nil
	}
}

func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "sluice.toml")
	writeFile(t, file, doc)
	return file
}

// startEcho serves a TCP echo backend on loopback: each connection gets
// back what it sends, and is closed once the client has closed its half.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// sluiceRun is run serving in a goroutine, driven by signals on an
// unbuffered channel: a send returns once run has taken the signal.
type sluiceRun struct {
	t      *testing.T
	addr   string
	file   string // the configuration file
	sigs   chan os.Signal
	done   chan struct{}
	err    error // run's result, once done is closed
	stderr mainSafeBuffer
}

// startSluice serves a plain listener that routes everything to backend.
func startSluice(t *testing.T, backend string) *sluiceRun {
	t.Helper()
	addr := freeAddr(t)
	return startSluiceWith(t, addr, `drain_timeout = "1m"
[log]
level = "debug"

[[listener]]
name = "plain"
address = "`+addr+`"
[[listener.route]]
upstream = "echo"

[[upstream]]
name = "echo"
servers = ["`+backend+`"]
`)
}

// startSluiceWith serves the configuration doc, whose first listener is
// at addr.
func startSluiceWith(t *testing.T, addr, doc string) *sluiceRun {
	t.Helper()
	r := &sluiceRun{t: t, addr: addr, sigs: make(chan os.Signal), done: make(chan struct{})}
	file := writeConfig(t, doc)
	r.file = file
	go func() {
		defer close(r.done)
		var stdout bytes.Buffer
		r.err = run([]string{"-config", file}, &stdout, &r.stderr, r.sigs)
	}()
	t.Cleanup(func() {
		// If the test stopped early, cut run short: two stop signals.
		for range 2 {
			select {
			case r.sigs <- syscall.SIGTERM:
			case <-r.done:
			case <-time.After(5 * time.Second):
			}
		}
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("run did not return at cleanup")
		}
		if t.Failed() {
			t.Logf("sluice log:\n%s", r.stderr.String())
		}
	})
	return r
}

// dial connects to sluice, retrying while it is not listening yet.
func (r *sluiceRun) dial() net.Conn {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err == nil {
			return c
		}
		select {
		case <-r.done:
			r.t.Fatalf("run returned %v before accepting a connection", r.err)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("dial %s: %v", r.addr, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// signal hands sig to run.
func (r *sluiceRun) signal(sig os.Signal) {
	r.t.Helper()
	select {
	case r.sigs <- sig:
	case <-r.done:
		r.t.Fatalf("run returned %v before taking %v", r.err, sig)
	case <-time.After(5 * time.Second):
		r.t.Fatalf("run did not take %v", sig)
	}
}

// waitRefused waits until sluice has closed its listener: new connections
// are refused. One that is still accepted meanwhile is closed at once; one
// that was queued when the listener closed is reset.
func (r *sluiceRun) waitRefused() {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		if err == nil {
			c.Close()
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("new connections not refused after the stop signal: last dial: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// running fails the test if run has returned.
func (r *sluiceRun) running() {
	r.t.Helper()
	select {
	case <-r.done:
		r.t.Fatalf("run returned %v too early", r.err)
	default:
	}
}

// wait waits for run to return and returns its result.
func (r *sluiceRun) wait(timeout time.Duration) error {
	r.t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		r.t.Fatalf("run did not return within %v", timeout)
		return nil
	}
}

// echo sends msg on c and checks that it comes back.
func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

// TestRunServeReloadDrain serves, reloads on SIGHUP, and drains on SIGTERM:
// the open connection keeps working, new ones are refused, and run returns
// nil once the last connection is closed.
func TestRunServeReloadDrain(t *testing.T) {
	r := startSluice(t, startEcho(t))
	c1 := r.dial()
	defer c1.Close()
	echo(t, c1, "hello")

	r.signal(syscall.SIGHUP)
	echo(t, c1, "after reload")
	c2 := r.dial()
	echo(t, c2, "new connection after reload")
	c2.Close()
	r.running()

	r.signal(syscall.SIGTERM)
	r.waitRefused()
	echo(t, c1, "while draining")
	echo(t, c1, "still draining")
	r.running()

	c1.Close()
	if err := r.wait(10 * time.Second); err != nil {
		t.Fatalf("run = %v, want nil after the drain", err)
	}
	log := r.stderr.String()
	for _, want := range []string{"sluice started", "shutting down", "sluice stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestRunSecondStopSignal checks that a second SIGTERM cuts the drain short:
// run returns nil at once and the open connection is closed.
func TestRunSecondStopSignal(t *testing.T) {
	r := startSluice(t, startEcho(t))
	c := r.dial()
	defer c.Close()
	echo(t, c, "hello")

	r.signal(syscall.SIGTERM)
	r.waitRefused()
	echo(t, c, "while draining")
	r.running()

	r.signal(syscall.SIGTERM)
	if err := r.wait(5 * time.Second); err != nil {
		t.Fatalf("run = %v, want nil", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if err == nil {
		t.Fatalf("read %d bytes from a connection that should be closed", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after the second stop signal: %v", err)
	}
	if !strings.Contains(r.stderr.String(), "second stop signal") {
		t.Errorf("log lacks the second stop signal:\n%s", r.stderr.String())
	}
}
