package handover

import (
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nonblocking reports whether ln's socket is in non-blocking mode.
func nonblocking(t *testing.T, ln *net.TCPListener) bool {
	t.Helper()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags int
	var ferr error
	rc.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if ferr != nil {
		t.Fatal(ferr)
	}
	return flags&unix.O_NONBLOCK != 0
}

// TestStartKeepsListenersNonblocking: a new process that fails before
// taking the sockets leaves this process's listeners as they were, so
// that their accept loops can still be woken (by a deadline or a close)
// rather than block in accept(2).
func TestStartKeepsListenersNonblocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tl := ln.(*net.TCPListener)
	f, err := tl.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !nonblocking(t, tl) {
		t.Fatal("a Go listener starts non-blocking")
	}
	_, err = Start("/bin/false", nil, map[string]*os.File{ln.Addr().String(): f}, nil, nil, nil, 5*time.Second)
	if err == nil {
		t.Fatal("Start of /bin/false succeeded")
	}
	if !nonblocking(t, tl) {
		// An Accept now would block in the syscall, past any deadline.
		t.Fatal("after a failed Start, the listener is in blocking mode")
	}
	// And the accept loop is still woken by a deadline.
	tl.SetDeadline(time.Now().Add(50 * time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := tl.Accept()
		done <- err
	}()
	select {
	case err := <-done:
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Errorf("Accept = %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept ignored its deadline")
	}
}
