package splice

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rcvLowat reads c's SO_RCVLOWAT.
func rcvLowat(tb testing.TB, c *net.TCPConn) int {
	tb.Helper()
	return sockInt(tb, c, func(fd int) (int, error) {
		return unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT)
	})
}

// lowatCap is what Linux caps SO_RCVLOWAT at on a socket whose receive
// buffer autotunes: half of net.ipv4.tcp_rmem's maximum.
func lowatCap(tb testing.TB) int {
	tb.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_rmem")
	if err != nil {
		tb.Skipf("tcp_rmem: %v", err)
	}
	f := strings.Fields(string(b))
	max, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		tb.Fatalf("tcp_rmem %q: %v", b, err)
	}
	return max / 2
}

// TestPace drives the batching decision with drains of given sizes and
// checks the source socket's SO_RCVLOWAT after each, for a copying and a
// spliced direction, and for a spliced one that falls back to copying.
func TestPace(t *testing.T) {
	for _, spliced := range []bool{false, true} {
		t.Run(map[bool]string{false: "copy", true: "splice"}[spliced], func(t *testing.T) {
			c, _ := tcpPair(t)
			ep := newEndpoint(c)
			h := &half{src: &ep, splice: spliced}
			mark := min(batchLowat, lowatCap(t))
			if spliced {
				mark = min(spliceBatchLowat, lowatCap(t))
			}
			step := func(moved int64, wantBatching bool) {
				t.Helper()
				h.pace(moved)
				want := 1
				if wantBatching {
					want = mark
				}
				if h.batching != wantBatching {
					t.Fatalf("after a drain of %d bytes: batching = %v, want %v", moved, h.batching, wantBatching)
				}
				if got := rcvLowat(t, c); got != want {
					t.Fatalf("after a drain of %d bytes: SO_RCVLOWAT = %d, want %d", moved, got, want)
				}
			}
			step(0, false)
			step(batchEnter/4, false)
			// The window has passed: what it counted no longer adds up.
			h.rateStart = time.Now().Add(-2 * batchWindow)
			step(batchEnter-1, false)
			step(1, true) // within the window: batchEnter in all
			step(0, true) // one empty flush: a pause between two responses, say
			step(100, true)
			for range batchQuiet - 1 {
				step(0, true)
			}
			step(0, false) // batchQuiet empty flushes in a row
			step(batchEnter, true)
			if !spliced {
				return
			}
			// splice(2) refused or no pipe: a copying direction's mark.
			h.copyInstead()
			if got, want := rcvLowat(t, c), min(batchLowat, lowatCap(t)); got != want || !h.batching {
				t.Fatalf("after falling back to copying: SO_RCVLOWAT = %d, batching = %v; want %d, true", got, h.batching, want)
			}
		})
	}
}

// TestRelayBatchedTail: a stream fast enough to batch, which then stops
// with fewer than batchLowat bytes queued and the connection open, must
// still deliver every byte (the flush deadline), and so must the small
// messages that follow it each way.
func TestRelayBatchedTail(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			w := newWorld(t, tr.cfg(Options{}))
			for round := range 3 {
				bulk := payload(4<<20 + 100 + round)
				sent := goWrite(w.backend, bulk, false)
				got := readFull(t, w.client, len(bulk))
				recvErr(t, sent, "backend write")
				if !bytes.Equal(got, bulk) {
					t.Fatalf("round %d: bulk differs", round)
				}
				// A request and a small reply, as after a download.
				mustWrite(t, w.client, []byte("next?"))
				if got := readFull(t, w.backend, 5); string(got) != "next?" {
					t.Fatalf("round %d: backend got %q", round, got)
				}
				mustWrite(t, w.backend, []byte("ok"))
				if got := readFull(t, w.client, 2); string(got) != "ok" {
					t.Fatalf("round %d: client got %q", round, got)
				}
			}
			peerCloseWrite(t, w.client)
			expectEOF(t, w.backend)
			peerCloseWrite(t, w.backend)
			expectEOF(t, w.client)
			r := w.wait(t)
			if r.st.BytesOut != 3*(4<<20+100)+3+3*2 {
				t.Fatalf("BytesOut = %d", r.st.BytesOut)
			}
		})
	}
}
