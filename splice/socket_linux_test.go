package splice

import (
	"io"
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

// TestShortRead: right after a read that returned less than it asked for,
// shortRead says "would block" without reading, once, even if bytes have
// arrived meanwhile; the wait that follows must then end at once, and
// the next read gets them. A read that filled its buffer is no reason to
// guess.
func TestShortRead(t *testing.T) {
	c, peer := tcpPair(t)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var s shortRead
	var b [8]byte
	// send writes p from the peer and waits until all of it is queued.
	send := func(p string) {
		t.Helper()
		mustWrite(t, peer, []byte(p))
		if !eventually(func() bool { return inq(t, c) == len(p) }) {
			t.Fatalf("%q did not arrive", p)
		}
	}
	// expect reads once: want is the bytes it must return, "" for
	// errWouldBlock.
	expect := func(step, want string) {
		t.Helper()
		n, err := s.read(rc, b[:])
		if want == "" && (n != 0 || err != errWouldBlock) {
			t.Fatalf("%s: %d bytes, %v; want errWouldBlock", step, n, err)
		}
		if want != "" && (err != nil || string(b[:n]) != want) {
			t.Fatalf("%s: %q, %v; want %q", step, b[:n], err, want)
		}
	}

	send("abc")
	expect("first read", "abc")
	send("def")
	expect("read after a short read", "")
	if inq(t, c) != 3 {
		t.Fatal("the guess consumed bytes")
	}
	c.SetReadDeadline(time.Now().Add(testTimeout))
	if err := waitReadable(rc); err != nil {
		t.Fatalf("wait with bytes queued after the guess: %v", err)
	}
	expect("read after the wait", "def")
	expect("read after that short one", "")

	send("0123456789abcdef")
	expect("full read", "01234567")
	expect("read after a full read", "89abcdef")
	expect("read of an empty socket", "")

	// While batching there is no guess.
	s = shortRead{off: true}
	send("ghi")
	expect("batching, first read", "ghi")
	send("jkl")
	expect("batching, read after a short read", "jkl")
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

// TestResetSeen: a socket reports a RST's error to one call only; a read
// after it finds an end of stream, which resetSeen must tell from a FIN.
func TestResetSeen(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(tb testing.TB, peer *net.TCPConn)
		want bool
	}{
		{"fin", func(tb testing.TB, peer *net.TCPConn) { peer.CloseWrite() }, false},
		{"reset", func(tb testing.TB, peer *net.TCPConn) { reset(tb, peer) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := tcpPair(t)
			tc.end(t, peer)
			rc := rawSocket(c)
			// Wait for the end to arrive, then let a write take the error,
			// as the relay's other direction may.
			if err := waitReadable(rc); err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("x"))
			c.Write([]byte("x"))
			var b [8]byte
			if _, err := readNonblock(rc, b[:]); err != io.EOF {
				t.Fatalf("read = %v, want EOF", err)
			}
			if got := resetSeen(rc); got != tc.want {
				t.Errorf("resetSeen = %v, want %v", got, tc.want)
			}
		})
	}
}
