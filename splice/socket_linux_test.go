package splice

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWaitReadableQueued: bytes that arrive between a read that saw EAGAIN
// and the wait must end the wait, even when Go's netpoller has already
// taken their readiness event (it does so whenever the scheduler idles).
// A wait that only sleeps until the next event would miss them until the
// peer sends more, which it may never do.
func TestWaitReadableQueued(t *testing.T) {
	c, peer := tcpPair(t)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := readNonblock(rc, b[:]); err != errWouldBlock {
		t.Fatalf("read on an empty socket: %v, want errWouldBlock", err)
	}
	mustWrite(t, peer, []byte{1})
	if !eventually(func() bool { return inq(t, c) == 1 }) {
		t.Fatal("the byte did not arrive")
	}
	// Not synchronisation: with every goroutine asleep the scheduler polls
	// the network, taking the socket's edge-triggered readiness event
	// before the wait below begins.
	<-time.After(20 * time.Millisecond)

	const limit = time.Second
	c.SetReadDeadline(time.Now().Add(limit))
	start := time.Now()
	if err := waitReadable(rc); err != nil {
		t.Fatalf("waitReadable with a byte queued: %v after %v", err, time.Since(start))
	}
	if n, err := readNonblock(rc, b[:]); n != 1 || err != nil {
		t.Fatalf("read after the wait: %d, %v", n, err)
	}
}

// eventually polls cond until it holds and reports whether it did within
// testTimeout. It polls a condition the test cannot be told about; it
// synchronises nothing (the millisecond between polls only spares the CPU).
func eventually(cond func() bool) bool {
	deadline := time.After(testTimeout)
	for !cond() {
		select {
		case <-time.After(time.Millisecond):
		case <-deadline:
			return false
		}
	}
	return true
}

// inq is how many bytes c's socket has received and nobody has read yet.
func inq(tb testing.TB, c *net.TCPConn) int {
	tb.Helper()
	return sockInt(tb, c, func(fd int) (int, error) { return unix.IoctlGetInt(fd, unix.SIOCINQ) })
}

// sockInt reads an int from c's socket with get, failing the test on error.
func sockInt(tb testing.TB, c *net.TCPConn, get func(fd int) (int, error)) int {
	tb.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var n int
	var gerr error
	if err := rc.Control(func(fd uintptr) { n, gerr = get(int(fd)) }); err != nil {
		tb.Fatal(err)
	}
	if gerr != nil {
		tb.Fatal(gerr)
	}
	return n
}
