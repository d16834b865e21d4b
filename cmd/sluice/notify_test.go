package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNotify: under systemd (NOTIFY_SOCKET), sluice says READY=1 once it
// serves, RELOADING=1 with MONOTONIC_USEC and READY=1 again around a
// reload, and STOPPING=1 when it drains, with STATUS= lines.
func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	next := func() string {
		t.Helper()
		sock.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 4096)
		n, err := sock.Read(b)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(b[:n])
	}
	expect := func(msg string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(msg, w+"\n") {
				t.Errorf("notification %q lacks %q", msg, w)
			}
		}
	}

	r := startSluice(t, startEcho(t))
	expect(next(), "READY=1", "STATUS=serving 0 connections")
	c := r.dial()
	defer c.Close()
	echo(t, c, "hello")

	r.signal(syscall.SIGHUP)
	msg := next()
	expect(msg, "RELOADING=1")
	if !strings.Contains(msg, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", msg)
	}
	expect(next(), "READY=1", "STATUS=serving 1 connections")

	r.signal(syscall.SIGTERM)
	expect(next(), "STOPPING=1", "STATUS=draining 1 connections")
}
