package main

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestListenAbortingClosesWithReset: a socket accepted from the backend's
// listener and closed before the backend touched it (as a SIGKILL right
// after accept closes it) must reach the peer as a reset, never as the
// clean end of a finished stream.
func TestListenAbortingClosesWithReset(t *testing.T) {
	ln, err := listenAborting(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the backend's close: %v, want a reset", err)
	}
}
