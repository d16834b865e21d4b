package l4

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// queued waits until t's queues hold again and fresh turns.
func queued(tb testing.TB, t *hsTurns, again, fresh int) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		t.mu.Lock()
		a, f := t.again.Len(), t.fresh.Len()
		t.mu.Unlock()
		if a == again && f == fresh {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("queues: %d again, %d fresh; want %d and %d", a, f, again, fresh)
		}
		runtime.Gosched()
	}
}

// waitCtx is a context that ends after d, or with the test.
func waitCtx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// oneTurnHeld returns turns of one, and the holder of that turn.
func oneTurnHeld(tb testing.TB) (*hsTurns, *hsTurn) {
	tb.Helper()
	turns := newHSTurns(1)
	holder := &hsTurn{t: turns}
	if err := holder.take(waitCtx(tb, testTimeout)); err != nil {
		tb.Fatal(err)
	}
	return turns, holder
}

// takeLater starts a new handshake's take on turns, in a goroutine; its
// result comes on the channel.
func takeLater(tb testing.TB, turns *hsTurns) (*hsTurn, <-chan error) {
	h := &hsTurn{t: turns}
	done := make(chan error, 1)
	go func() { done <- h.take(waitCtx(tb, testTimeout)) }()
	return h, done
}

// acquireLater starts a handshake's Acquire on turns, as one coming back
// from a wait, in a goroutine; the channel is closed once it has the turn.
func acquireLater(turns *hsTurns) (*hsTurn, <-chan struct{}) {
	h := &hsTurn{t: turns}
	done := make(chan struct{})
	go func() { h.Acquire(); close(done) }()
	return h, done
}

// took fails the test unless the take whose result done brings succeeded.
func took(tb testing.TB, done <-chan error) {
	tb.Helper()
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
}

// TestHSTurnsOrder: with one turn, a handshake coming back from a wait
// takes the turn before one not yet started, whatever came first; each
// waits while the turn is held.
func TestHSTurnsOrder(t *testing.T) {
	turns, first := oneTurnHeld(t)
	fresh, freshDone := takeLater(t, turns)
	queued(t, turns, 0, 1)
	back, backDone := acquireLater(turns)
	queued(t, turns, 1, 1)

	first.Release()
	select {
	case <-backDone:
	case err := <-freshDone:
		t.Fatalf("the new handshake took the turn (err %v) before the one coming back from a wait", err)
	case <-time.After(testTimeout):
		t.Fatal("nobody took the turn given back")
	}
	select {
	case err := <-freshDone:
		t.Fatalf("the new handshake took the turn (err %v) while one coming back from a wait held it", err)
	default:
	}
	back.Release()
	took(t, freshDone)
	fresh.Release()
	fresh.Release() // a turn not held is not given back twice
	turnsReturned(t, turns)
}

// TestHSTurnsTimeout: a new handshake waits for a turn at most its
// timeout, and leaves the queue when it gives up; one that gives up after
// it was handed the turn passes it on.
func TestHSTurnsTimeout(t *testing.T) {
	turns, holder := oneTurnHeld(t)
	late := &hsTurn{t: turns}
	if err := late.take(waitCtx(t, time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("take with the turn held: %v, want its deadline exceeded", err)
	}
	queued(t, turns, 0, 0)

	// Handed the turn just as its wait ended: it must not keep it.
	gaveUp := &hsTurn{t: turns}
	turns.mu.Lock()
	gaveUp.queueLocked(&turns.fresh)
	turns.mu.Unlock()
	next, nextDone := takeLater(t, turns)
	queued(t, turns, 0, 2)
	holder.Release() // to gaveUp, first in line
	queued(t, turns, 0, 1)
	gaveUp.giveUp()
	took(t, nextDone)
	next.Release()
	turnsReturned(t, turns)
}

// TestHSTurnsAcquireEnds: a handshake coming back from a wait waits for a
// turn no longer than the handshake may last, and then holds none.
func TestHSTurnsAcquireEnds(t *testing.T) {
	turns, holder := oneTurnHeld(t)
	end := make(chan struct{})
	back := &hsTurn{t: turns, done: end}
	acquired := make(chan struct{})
	go func() {
		back.Acquire()
		close(acquired)
	}()
	queued(t, turns, 1, 0)
	close(end)
	<-acquired
	if back.held {
		t.Fatal("Acquire after the handshake's end holds a turn")
	}
	queued(t, turns, 0, 0)
	back.Release() // holds nothing: gives nothing back
	holder.Release()
	turnsReturned(t, turns)
}

// fakeBacklog is a backlog whose lateness the test sets.
type fakeBacklog struct {
	isLate atomic.Bool
	sends  atomic.Int32
}

func (b *fakeBacklog) send()      { b.sends.Add(1) }
func (b *fakeBacklog) late() bool { return b.isLate.Load() }

// TestHSTurnsBacklog: while the backlog is late, a new handshake waits
// even with a turn free, and one coming back from a wait does not; once
// it is back, readmit starts the new one. Each new handshake measures the
// backlog.
func TestHSTurnsBacklog(t *testing.T) {
	turns := newHSTurns(2)
	b := &fakeBacklog{}
	turns.probe = b
	first := &hsTurn{t: turns}
	if err := first.take(waitCtx(t, testTimeout)); err != nil {
		t.Fatal(err)
	}
	if n := b.sends.Load(); n != 1 {
		t.Fatalf("a new handshake started with %d measurements, want 1", n)
	}

	b.isLate.Store(true)
	fresh, freshDone := takeLater(t, turns)
	queued(t, turns, 0, 1)
	back := &hsTurn{t: turns}
	back.Acquire() // the second turn, free: no wait for the backlog
	back.Release() // the turn is free again; the new one still waits
	queued(t, turns, 0, 1)
	select {
	case err := <-freshDone:
		t.Fatalf("a new handshake started (err %v) while the backlog was late", err)
	default:
	}

	// With both turns held, one coming back from a wait queues behind
	// them, and is handed the next turn given back, backlog or not.
	second := &hsTurn{t: turns}
	second.Acquire()
	again, againDone := acquireLater(turns)
	queued(t, turns, 1, 1)
	second.Release()
	<-againDone
	again.Release()
	queued(t, turns, 0, 1)

	b.isLate.Store(false)
	turns.readmit()
	took(t, freshDone)
	if n := b.sends.Load(); n != 2 {
		t.Fatalf("%d measurements after two new handshakes, want 2", n)
	}
	fresh.Release()
	first.Release()
	turnsReturned(t, turns)
}

// TestHSTurnsStopProbe: a new handshake waiting for a late backlog starts
// once the probe is stopped.
func TestHSTurnsStopProbe(t *testing.T) {
	turns := newHSTurns(1)
	b := &fakeBacklog{}
	b.isLate.Store(true)
	turns.probe = b
	fresh, freshDone := takeLater(t, turns)
	queued(t, turns, 0, 1)
	turns.stopProbe()
	took(t, freshDone)
	fresh.Release()
	turnsReturned(t, turns)
}

// clientHello returns the first flight of a TLS client: a ClientHello.
func clientHello(t *testing.T) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	go func() {
		tls.Client(a, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}).Handshake()
		a.Close()
	}()
	buf := make([]byte, 16<<10)
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// sendHello connects to addr and sends a ClientHello, and nothing more;
// reads from the conn wait testTimeout at most. It is closed at the end of
// the test.
func sendHello(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(clientHello(t)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(testTimeout))
	return c
}

// TestHandshakeTurnsStalledClient: with one turn to compute handshakes, a
// client that sends its ClientHello and then nothing does not hold the
// turn while the server waits for it: another client's handshake goes
// through meanwhile.
func TestHandshakeTurnsStalledClient(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].HandshakeTimeout = Duration{time.Minute}
	p, addrs := w.serve(cfg)
	oneTurn(p, -1)

	stalled := sendHello(t, addrs[0])
	// The server's first flight: its handshake has computed, and waits.
	if _, err := io.ReadFull(stalled, make([]byte, 1)); err != nil {
		t.Fatalf("reading the server's first flight: %v", err)
	}

	handshakeMeanwhile(t, w, p, addrs[0], stalled, "another client stalls")
}

// handshakeMeanwhile checks that another client's handshake and an echo
// go through while waiting waits, then, with both closed, that every turn
// is back.
func handshakeMeanwhile(t *testing.T, w *world, p *Proxy, addr string, waiting net.Conn, while string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: w.pool})
	if err != nil {
		t.Fatalf("a handshake while %s: %v", while, err)
	}
	defer c.Close()
	echoLine(t, c, "through")
	c.Close()
	waiting.Close()
	turnsReturned(t, p.turns)
}

// TestHandshakeTurnsBlockedWrite: with one turn, a client that sends its
// ClientHello and then reads nothing, with a window so small that the
// server's first flight (a certificate of some 150 KB) cannot be sent,
// does not hold the turn while the server waits for room to write:
// another client's handshake goes through meanwhile.
func TestHandshakeTurnsBlockedWrite(t *testing.T) {
	w := newWorld(t)
	names := []string{"localhost"}
	for i := range 6000 {
		names = append(names, fmt.Sprintf("n%05d.filler.example", i))
	}
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].TLS.Certificates = []CertConfig{w.cert(names...)}
	cfg.Listeners[0].HandshakeTimeout = Duration{time.Minute}
	p, addrs := w.serve(cfg)
	oneTurn(p, -1)

	// A small MSS keeps the server's send buffer small too (Linux sizes
	// it from the MSS), so the flight waits on the client's window.
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 536); serr == nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			}
		})
		return cmp.Or(err, serr)
	}}
	blocked, err := d.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer blocked.Close()
	if _, err := blocked.Write(clientHello(t)); err != nil {
		t.Fatal(err)
	}
	// The first bytes of the server's flight: its handshake has computed
	// and is writing the rest.
	blocked.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadFull(blocked, make([]byte, 1)); err != nil {
		t.Fatalf("reading the server's first flight: %v", err)
	}

	handshakeMeanwhile(t, w, p, addrs[0], blocked, "another's flight waits for room")
}

// oneTurn gives p's handshakes one turn, which they take once more than
// free are in progress in the process (free -1: always).
func oneTurn(p *Proxy, free int64) {
	p.turns.mu.Lock()
	p.turns.max = 1
	p.turns.mu.Unlock()
	p.turns.free.Store(free)
}

// TestHandshakeTurnsOnlyInACrowd: handshakes take turns only once more
// are in progress than the turns let go free. With one turn, held
// elsewhere, and one handshake free, a first client's handshake computes
// without a turn, and a second one's, begun while the first waits for
// its client, waits for the turn and is shed at handshake_timeout. The
// first is on a listener of its own with a long handshake_timeout, so
// that it is still in progress however late the second begins: the
// count is the process's.
func TestHandshakeTurnsOnlyInACrowd(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].HandshakeTimeout = Duration{time.Second}
	patient := cfg.Listeners[0]
	patient.Name, patient.HandshakeTimeout = "patient", Duration{time.Minute}
	cfg.Listeners = append(cfg.Listeners, patient)
	p, addrs := w.serve(cfg)
	oneTurn(p, 1)
	holder := &hsTurn{t: p.turns}
	if err := holder.take(waitCtx(t, testTimeout)); err != nil {
		t.Fatal(err)
	}

	free := sendHello(t, addrs[1])
	if _, err := io.ReadFull(free, make([]byte, 1)); err != nil {
		t.Fatalf("the first handshake in progress, the turn held elsewhere: %v; want the server's first flight", err)
	}
	crowded := sendHello(t, addrs[0])
	if n, err := io.ReadFull(crowded, make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the second handshake in progress: read %d bytes (%v), want it shed for want of a turn", n, err)
	}
	w.waitLog("msg=access", "reason=handshake", "no turn to compute the handshake within 1s")

	holder.Release()
	free.Close()
	turnsReturned(t, p.turns)
}

// turnsReturned waits until no turn is held, none is waited for and no
// handshake is counted in progress.
func turnsReturned(tb testing.TB, t *hsTurns) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		t.mu.Lock()
		used, a, f := t.used, t.again.Len(), t.fresh.Len()
		t.mu.Unlock()
		n := t.inProgress.Load()
		if used == 0 && a == 0 && f == 0 && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d turns held, %d and %d waiting, %d handshakes counted in progress, after every handshake ended", used, a, f, n)
		}
		runtime.Gosched()
	}
}

// TestHandshakeTurnsShed: a handshake that waits handshake_timeout for a
// turn is shed, logged and counted as no_turn; the handshakes after it,
// and the turns, are as before.
func TestHandshakeTurnsShed(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].HandshakeTimeout = Duration{200 * time.Millisecond}
	p, addrs := w.serve(cfg)
	oneTurn(p, -1)
	holder := &hsTurn{t: p.turns}
	if err := holder.take(waitCtx(t, testTimeout)); err != nil {
		t.Fatal(err)
	}

	shed := sendHello(t, addrs[0])
	if n, err := io.ReadFull(shed, make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("a handshake with no turn for handshake_timeout: read %d bytes (%v), want the connection closed", n, err)
	}
	w.waitLog("msg=access", "reason=handshake", "no turn to compute the handshake within 200ms")
	waitMetric(t, p, 1, "sluice_tls_handshake_failures_total", "listener", "test", "reason", hsFailNoTurn)

	holder.Release()
	c, err := tls.Dial("tcp", addrs[0], &tls.Config{ServerName: "localhost", RootCAs: w.pool})
	if err != nil {
		t.Fatalf("a handshake after the shed one: %v", err)
	}
	echoLine(t, c, "after")
	c.Close()
	turnsReturned(t, p.turns)
}
