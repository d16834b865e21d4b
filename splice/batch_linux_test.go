package splice

import (
	"bytes"
	"net"
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

// TestPace drives the batching decision with drains of given sizes and
// checks the source socket's SO_RCVLOWAT after each.
func TestPace(t *testing.T) {
	c, _ := tcpPair(t)
	var ep endpoint
	ep.init(c)
	h := &half{src: &ep}
	step := func(moved int64, wantBatching bool) {
		t.Helper()
		h.pace(moved)
		want := 1
		if wantBatching {
			want = batchLowat
		}
		if h.batching != wantBatching {
			t.Fatalf("after a drain of %d bytes: batching = %v, want %v", moved, h.batching, wantBatching)
		}
		if got := rcvLowat(t, c); got < want || (!wantBatching && got != 1) {
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
