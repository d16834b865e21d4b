package splice

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// integrityBytes is what TestRelayIntegrity sends each way: enough to cross
// every buffer, pipe and TLS record boundary many times, at a few tenths
// of a second per path even under the race detector.
const integrityBytes = 16 << 20

// bulkTimeout bounds a test that moves many MiB: a safety net against a
// hang, as testTimeout is for the small steps.
const bulkTimeout = 30 * time.Second

// streamResult is what one end of a stream saw: how many bytes and their
// SHA-256.
type streamResult struct {
	n   int64
	sum [sha256.Size]byte
	err error
}

func (r streamResult) String() string {
	return fmt.Sprintf("%d bytes, sha256 %x", r.n, r.sum[:8])
}

// newStream is a deterministic pseudo-random byte stream: different seeds,
// different bytes, so a relay that mixed up or echoed the two directions
// could not produce the other side's hash.
func newStream(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

// sendStream writes n bytes of the stream seeded by seed to c, in writes of
// pseudo-random sizes from 1 byte to 64 KiB, and reports the SHA-256 of what
// c accepted.
func sendStream(res chan<- streamResult, c net.Conn, seed, n int64) {
	src := newStream(uint64(seed))
	sizes := rand.New(rand.NewPCG(uint64(seed), 1))
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var r streamResult
	for r.n < n {
		chunk := buf[:min(int64(1+sizes.IntN(len(buf))), n-r.n)]
		src.Read(chunk)
		w, err := c.Write(chunk)
		h.Write(chunk[:w])
		r.n += int64(w)
		if err != nil {
			r.err = err
			break
		}
	}
	h.Sum(r.sum[:0])
	res <- r
}

// recvStream reads c to its end and reports how many bytes and their
// SHA-256; err is nil only for a clean EOF (over TLS: close_notify).
func recvStream(res chan<- streamResult, c net.Conn) {
	h := sha256.New()
	var r streamResult
	r.n, r.err = io.CopyBuffer(h, struct{ io.Reader }{c}, make([]byte, 64<<10))
	h.Sum(r.sum[:0])
	res <- r
}

// recvStreamResult waits for a stream's result, failing the test on an
// error or if it takes longer than bulkTimeout.
func recvStreamResult(tb testing.TB, ch <-chan streamResult, what string) streamResult {
	tb.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			tb.Fatalf("%s: %v (after %d bytes)", what, r.err, r.n)
		}
		return r
	case <-time.After(bulkTimeout):
		tb.Fatalf("%s: timed out", what)
		panic("unreachable")
	}
}

// usesPipes reports whether the relay splices between two sockets on this
// transport (and so borrows pipes, not buffers).
func (tr transport) usesPipes() bool { return !tr.tls && !tr.noSplice }

// TestRelayIntegrity moves many MiB each way at the same time, different
// pseudo-random streams in writes of random sizes, on every path, and checks
// that each side received exactly what the other sent (SHA-256 and length),
// the byte counters, the reason, that every buffer and pipe went back to its
// pool, and that pipes were used exactly on the splice paths.
func TestRelayIntegrity(t *testing.T) {
	const n = integrityBytes
	up, down := int64(n), int64(n+13) // different lengths catch swapped counters
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			buffers, pipes := &BufferPool{}, &PipePool{}
			t.Cleanup(pipes.Close) // after the world's cleanup has reaped the relay
			w := newWorld(t, tr.cfg(Options{Buffers: buffers, Pipes: pipes}))
			deadline := time.Now().Add(bulkTimeout)
			w.client.SetDeadline(deadline)
			w.backend.SetDeadline(deadline)

			upSent, upGot := make(chan streamResult, 1), make(chan streamResult, 1)
			downSent, downGot := make(chan streamResult, 1), make(chan streamResult, 1)
			go sendStream(upSent, w.client, 1, up)
			go recvStream(upGot, w.backend)
			go sendStream(downSent, w.backend, 2, down)
			go recvStream(downGot, w.client)

			// The client half-closes as soon as it has sent everything;
			// the backend only once it has also read the client's EOF, so
			// the client's direction ends first: ClientClosed.
			us := recvStreamResult(t, upSent, "client send")
			peerCloseWrite(t, w.client)
			ug := recvStreamResult(t, upGot, "backend receive")
			ds := recvStreamResult(t, downSent, "backend send")
			peerCloseWrite(t, w.backend)
			dg := recvStreamResult(t, downGot, "client receive")

			if us.n != up || ug != us {
				t.Errorf("client→backend: sent %v, backend received %v", us, ug)
			}
			if ds.n != down || dg != ds {
				t.Errorf("backend→client: sent %v, client received %v", ds, dg)
			}
			checkResult(t, w.wait(t), Stats{BytesIn: up, BytesOut: down, Reason: ClientClosed})
			checkPoolsIdle(t, buffers, pipes, nil)
			if open := pipes.Stats().Open; tr.usesPipes() != (open > 0) {
				t.Errorf("%d pipes open after a relay on %s (splices: %v)", open, tr.name, tr.usesPipes())
			}
		})
	}
}

// checkPoolsIdle fails the test if a relay that has ended left a buffer,
// a pipe or a parked direction behind.
func checkPoolsIdle(tb testing.TB, buffers *BufferPool, pipes *PipePool, parker *Parker) {
	tb.Helper()
	if n := buffers.Outstanding(); n != 0 {
		tb.Errorf("%d buffers still out of the pool", n)
	}
	if n := pipes.Stats().InUse; n != 0 {
		tb.Errorf("%d pipes still in use", n)
	}
	if parker != nil {
		if n := parker.Parked(); n != 0 {
			tb.Errorf("%d directions still parked", n)
		}
	}
}

// TestStreamHelpers makes sure the stream helpers can tell streams apart:
// a hash comparison that always matched would prove nothing.
func TestStreamHelpers(t *testing.T) {
	a, b := make([]byte, 1<<10), make([]byte, 1<<10)
	newStream(1).Read(a)
	newStream(2).Read(b)
	if bytes.Equal(a, b) {
		t.Fatal("streams with different seeds are equal")
	}
	c, d := tcpPair(t)
	sent, got := make(chan streamResult, 1), make(chan streamResult, 1)
	go recvStream(got, d)
	go sendStream(sent, c, 1, 100<<10)
	s := recvStreamResult(t, sent, "send")
	c.CloseWrite()
	g := recvStreamResult(t, got, "receive")
	if s != g || s.n != 100<<10 {
		t.Fatalf("sent %v, received %v", s, g)
	}
	other := make(chan streamResult, 1)
	e, f := tcpPair(t)
	go recvStream(other, f)
	go sendStream(sent, e, 2, 100<<10)
	recvStreamResult(t, sent, "send")
	e.CloseWrite()
	if o := recvStreamResult(t, other, "receive"); o == g {
		t.Fatalf("seed 2 hashed like seed 1: %v", o)
	}
}
