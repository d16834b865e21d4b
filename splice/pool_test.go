package splice

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// blockedAfter is how long a client write may make no progress before the
// client counts as blocked. Stalls of a loaded machine may end the filling
// early; that weakens the test but cannot fail it.
const blockedAfter = 250 * time.Millisecond

// kernelBufferBound is the most bytes that can sit between a client and a
// backend that reads nothing, outside the relay's own buffer or pipe: the
// client's send buffer, the relay's receive buffer on the client socket and
// send buffer on the backend socket, and the backend's receive buffer, each
// at most its sysctl maximum; plus one pipe and one buffer.
func kernelBufferBound(tb testing.TB) int64 {
	tb.Helper()
	rmem := sysctlMax(tb, "/proc/sys/net/ipv4/tcp_rmem")
	wmem := sysctlMax(tb, "/proc/sys/net/ipv4/tcp_wmem")
	return 2*(rmem+wmem) + DefaultPipeSize + DefaultBufferSize
}

// sysctlMax reads the last of the numbers in a sysctl file such as
// tcp_rmem ("min default max").
func sysctlMax(tb testing.TB, path string) int64 {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		tb.Fatalf("%s: empty", path)
	}
	n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return n
}

// TestRelayBackpressure: a backend that reads nothing must stop the client
// once the kernel buffers on the way are full. The relay holds at most one
// buffer or pipe, for the blocked direction, and does not read ahead into
// memory of its own: what the client got to write stays within the kernel's
// buffers. When the backend reads, every accepted byte arrives, in order.
func TestRelayBackpressure(t *testing.T) {
	bound := kernelBufferBound(t)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			buffers, pipes := &BufferPool{}, &PipePool{}
			t.Cleanup(pipes.Close)
			w := newWorld(t, tr.cfg(Options{Buffers: buffers, Pipes: pipes}))

			sent, sum := fillUntilBlocked(t, w.client, tr.tls, bound)
			out, inUse := buffers.Outstanding(), pipes.Stats().InUse
			t.Logf("the client blocked after %d bytes (bound %d); buffers out %d, pipes in use %d", sent, bound, out, inUse)
			if out+inUse > 1 {
				t.Errorf("blocked relay holds %d buffers and %d pipes, want at most one in all", out, inUse)
			}

			w.backend.SetReadDeadline(time.Now().Add(bulkTimeout))
			h := sha256.New()
			if n, err := io.CopyN(h, w.backend, sent); err != nil {
				t.Fatalf("backend read %d of %d bytes: %v", n, sent, err)
			}
			if got := h.Sum(nil); !bytes.Equal(got, sum[:]) {
				t.Fatalf("backend got different bytes: sha256 %x, client sent %x", got[:8], sum[:8])
			}
			// A bare FIN: over TLS the client's writer is spent (a write
			// that timed out leaves crypto/tls unable to write again), and
			// may have left half a record behind, which the relay must
			// drop rather than deliver.
			if err := w.clientRaw.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if rest := readAll(t, w.backend); len(rest) != 0 {
				t.Fatalf("backend got %d bytes beyond what the client's writes accepted", len(rest))
			}
			w.backend.Close()
			expectEnd(t, w.client)
			want := Stats{BytesIn: sent, Reason: ClientClosed}
			if tr.tls {
				want.Reason = ClientTruncated // no close_notify
			}
			r := w.wait(t)
			if tr.plainTLS && r.st.Reason == ClientClosed {
				// Without a Transport the relay sees a bare FIN only when
				// it cuts a record (see Transport.eof).
				want.Reason = ClientClosed
			}
			checkResult(t, r, want)
			checkPoolsIdle(t, buffers, pipes, nil)
		})
	}
}

// fillUntilBlocked writes a pseudo-random stream to c until a write makes
// no progress for blockedAfter, and returns how many bytes c accepted and
// their SHA-256. It fails the test if c accepts more than bound bytes.
func fillUntilBlocked(tb testing.TB, c net.Conn, isTLS bool, bound int64) (int64, [sha256.Size]byte) {
	tb.Helper()
	src := newStream(3)
	h := sha256.New()
	chunk := make([]byte, 64<<10)
	var sent int64
	for sent <= bound {
		src.Read(chunk)
		c.SetWriteDeadline(time.Now().Add(blockedAfter))
		n, err := c.Write(chunk)
		h.Write(chunk[:n])
		sent += int64(n)
		switch {
		case err == nil:
			continue
		case !isTimeout(err):
			tb.Fatalf("client write after %d bytes: %v", sent, err)
		case n == 0 || isTLS:
			// Over TLS a timed-out write is final: crypto/tls refuses
			// any further write.
			var sum [sha256.Size]byte
			h.Sum(sum[:0])
			return sent, sum
		}
		// Some progress before the deadline: the next write tells.
	}
	tb.Fatalf("the client wrote %d bytes without blocking to a backend that reads nothing; the kernel holds at most %d", sent, bound)
	panic("unreachable")
}

// ending is one way for a relay to end, after bytes have moved both ways.
type ending struct {
	name string
	opts Options
	end  func(w *world) error
	want Reason
}

// poolTestTimeout is the idle and half-close timeout of the relays that
// end by one: long enough for the bytes to move first on a loaded machine.
const poolTestTimeout = 500 * time.Millisecond

var endings = []ending{
	{name: "eof", end: endBothEOF, want: ClientClosed},
	{name: "client_reset", end: endClientReset, want: ClientReset},
	{name: "backend_reset", end: endBackendReset, want: BackendReset},
	{name: "cancel", end: func(w *world) error { w.cancel(); return nil }, want: Canceled},
	{name: "idle", opts: Options{IdleTimeout: poolTestTimeout}, end: func(*world) error { return nil }, want: IdleTimeout},
	{name: "half_close_timeout", opts: Options{HalfCloseTimeout: poolTestTimeout}, end: endHalfOpen, want: IdleTimeout},
}

// endBothEOF: the client half-closes, the backend reads the EOF and
// half-closes too.
func endBothEOF(w *world) error {
	if err := closeWriteErr(w.client); err != nil {
		return err
	}
	if err := readEOF(w.backend); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if err := w.backend.CloseWrite(); err != nil {
		return err
	}
	if err := readEOF(w.client); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}

// endHalfOpen: the client half-closes; the backend reads the EOF and then
// neither writes nor closes, so the half-close timeout ends the relay.
func endHalfOpen(w *world) error {
	if err := closeWriteErr(w.client); err != nil {
		return err
	}
	return readEOF(w.backend)
}

func endClientReset(w *world) error {
	w.clientRaw.SetLinger(0)
	w.clientRaw.Close()
	return readReset(w.backend)
}

func endBackendReset(w *world) error {
	w.backend.SetLinger(0)
	w.backend.Close()
	return readReset(w.client)
}

// closeWriteErr is peerCloseWrite for goroutines other than the test's.
func closeWriteErr(c net.Conn) error {
	if tc, ok := c.(interface {
		CloseWrite() error
		NetConn() net.Conn
	}); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		c = tc.NetConn()
	}
	return c.(*net.TCPConn).CloseWrite()
}

// readEOF expects a clean end of stream with no byte before it.
func readEOF(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(testTimeout))
	b, err := io.ReadAll(c)
	if err != nil || len(b) != 0 {
		return fmt.Errorf("read to EOF: %d bytes, %v", len(b), err)
	}
	return nil
}

// readExactly reads len(want) bytes from c and compares them with want.
func readExactly(c net.Conn, want []byte) error {
	c.SetReadDeadline(time.Now().Add(testTimeout))
	got := make([]byte, len(want))
	if n, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read %d bytes: %w (after %d)", len(want), err, n)
	}
	if !bytes.Equal(got, want) {
		return errors.New("bytes differ")
	}
	return nil
}

// exchange sends up from the client to the backend and down the other way,
// both at once, and checks what arrives.
func exchange(w *world, up, down []byte) error { return exchangePieces(w, up, down, 1) }

// exchangePieces is exchange with each way written in n writes, one after
// another.
func exchangePieces(w *world, up, down []byte, n int) error {
	errc := make(chan error, 2)
	go writePieces(errc, w.client, up, n)
	go writePieces(errc, w.backend, down, n)
	if err := readExactly(w.backend, up); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if err := readExactly(w.client, down); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	for range 2 {
		if err := <-errc; err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}

// writePieces writes p to c in n writes, one after another, and reports
// on errc.
func writePieces(errc chan<- error, c net.Conn, p []byte, n int) {
	c.SetWriteDeadline(time.Now().Add(testTimeout))
	size := max(len(p)/n, 1)
	for len(p) > 0 {
		k := min(size, len(p))
		if _, err := c.Write(p[:k]); err != nil {
			errc <- err
			return
		}
		p = p[k:]
	}
	errc <- nil
}

// runEnding moves bytes both ways through w's relay, reports on moved,
// waits for start, ends the relay as e says, checks the relay's result and
// closes the test's conns. It reports on errc.
func runEnding(errc, moved chan<- error, start <-chan struct{}, w *world, e ending) {
	err := func() error {
		defer w.backend.Close()
		defer w.client.Close()
		const up, down = 48 << 10, 40 << 10
		err := exchange(w, payload(up), payload(down))
		moved <- err
		if err != nil {
			return err
		}
		<-start
		if err := e.end(w); err != nil {
			return err
		}
		select {
		case r := <-w.done:
			w.result = &r
		case <-time.After(testTimeout):
			return errors.New("Relay did not return")
		}
		want := Stats{BytesIn: up, BytesOut: down, Reason: e.want}
		if r := *w.result; !sameStats(r.st, want) || r.err != nil {
			return fmt.Errorf("Relay = %+v, %v; want %+v, nil", r.st, r.err, want)
		}
		return nil
	}()
	if err != nil {
		err = fmt.Errorf("%s: %w", e.name, err)
	}
	errc <- err
}

// openFDs lists the process's open descriptors as "fd -> target".
func openFDs(tb testing.TB) []string {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	fds := make([]string, 0, len(ents))
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds = append(fds, e.Name()+" -> "+target)
	}
	return fds
}

// TestRelayPoolsReturn runs many relays at once over every path, sharing
// private pools and a Parker, and ends them in every way there is. Then no
// buffer, pipe or parked direction may be left, and once the pools and the
// Parker are closed the process has exactly the descriptors it had before.
func TestRelayPoolsReturn(t *testing.T) {
	const relays = 50
	// The netpoller's own descriptors open on first use: count after it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	before := openFDs(t)

	buffers, pipes := &BufferPool{}, &PipePool{}
	t.Cleanup(pipes.Close)
	parker, err := NewParker()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { parker.Close() })

	// Each relay moves bytes as soon as it starts (before an idle timeout
	// can end it); then all of them, open at once, are ended together.
	worlds := make([]*world, relays)
	cases := make([]ending, relays)
	errc, moved := make(chan error, relays), make(chan error, relays)
	start := make(chan struct{})
	for i := range relays {
		// 7 paths and 6 endings: the first 42 relays cover every pair.
		tr, e := transports[i%len(transports)], endings[i%len(endings)]
		opts := e.opts
		opts.Buffers, opts.Pipes = buffers, pipes
		if tr.park {
			opts.Parker, opts.ParkAfter = parker, 2*time.Millisecond
		}
		cfg := tr.cfg(opts)
		cfg.park = false // the shared Parker, not one per world
		worlds[i], cases[i] = newWorld(t, cfg), e
		go runEnding(errc, moved, start, worlds[i], e)
	}
	for range relays {
		if err := <-moved; err != nil {
			t.Errorf("moving bytes: %v", err)
		}
	}
	close(start)
	for range relays {
		if err := <-errc; err != nil {
			t.Errorf("relay: %v", err)
		}
	}
	for i, w := range worlds {
		if w.result == nil {
			t.Errorf("relay %d (%s) did not end", i, cases[i].name)
		}
	}
	checkPoolsIdle(t, buffers, pipes, parker)
	if st := pipes.Stats(); st.Open == 0 {
		t.Error("no pipe was ever opened: the splice paths did not run")
	}

	pipes.Close()
	if st := pipes.Stats(); st.Open != 0 {
		t.Errorf("%d pipes open after Close", st.Open)
	}
	if err := parker.Close(); err != nil {
		t.Errorf("Parker.Close: %v", err)
	}
	for _, w := range worlds {
		w.clientRaw.Close()
	}
	after := openFDs(t)
	if len(after) != len(before) {
		t.Errorf("%d descriptors open, %d before the relays\nnew: %v\ngone: %v", len(after), len(before),
			without(after, before), without(before, after))
	}
}

// without returns the elements of a not in b.
func without(a, b []string) []string {
	var d []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			d = append(d, s)
		}
	}
	return d
}
