package l4

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
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

// TestHSTurnsOrder: with one turn, a handshake coming back from a wait
// takes the turn before one not yet started, whatever came first; each
// waits while the turn is held.
func TestHSTurnsOrder(t *testing.T) {
	turns := newHSTurns(1)
	first := &hsTurn{t: turns}
	if err := first.take(context.Background(), testTimeout); err != nil {
		t.Fatal(err)
	}
	fresh := &hsTurn{t: turns}
	freshDone := make(chan error, 1)
	go func() { freshDone <- fresh.take(context.Background(), testTimeout) }()
	queued(t, turns, 0, 1)
	back := &hsTurn{t: turns}
	backDone := make(chan struct{})
	go func() { back.Acquire(); close(backDone) }()
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
	if err := <-freshDone; err != nil {
		t.Fatal(err)
	}
	fresh.Release()
	fresh.Release() // a turn not held is not given back twice
	if turns.used != 0 {
		t.Fatalf("%d turns held after all were given back", turns.used)
	}
}

// TestHSTurnsTimeout: a new handshake waits for a turn at most its
// timeout, and leaves the queue when it gives up; one that gives up after
// it was handed the turn passes it on.
func TestHSTurnsTimeout(t *testing.T) {
	turns := newHSTurns(1)
	holder := &hsTurn{t: turns}
	if err := holder.take(context.Background(), testTimeout); err != nil {
		t.Fatal(err)
	}
	late := &hsTurn{t: turns}
	if err := late.take(context.Background(), time.Millisecond); !errors.Is(err, ErrNoTurn) {
		t.Fatalf("take with the turn held: %v, want ErrNoTurn", err)
	}
	queued(t, turns, 0, 0)

	// Handed the turn just as its wait ended: it must not keep it.
	gaveUp := &hsTurn{t: turns}
	turns.mu.Lock()
	gaveUp.queueLocked(&turns.fresh)
	turns.mu.Unlock()
	next := &hsTurn{t: turns}
	nextDone := make(chan error, 1)
	go func() { nextDone <- next.take(context.Background(), testTimeout) }()
	queued(t, turns, 0, 2)
	holder.Release() // to gaveUp, first in line
	queued(t, turns, 0, 1)
	gaveUp.giveUp()
	if err := <-nextDone; err != nil {
		t.Fatal(err)
	}
	next.Release()
	if turns.used != 0 {
		t.Fatalf("%d turns held after all were given back", turns.used)
	}
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

// TestHandshakeTurnsStalledClient: with one turn to compute handshakes, a
// client that sends its ClientHello and then nothing does not hold the
// turn while the server waits for it: another client's handshake goes
// through meanwhile.
func TestHandshakeTurnsStalledClient(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].HandshakeTimeout = Duration{time.Minute}
	p, addrs := w.serve(cfg)
	p.turns.mu.Lock()
	p.turns.max = 1
	p.turns.mu.Unlock()

	stalled, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := stalled.Write(clientHello(t)); err != nil {
		t.Fatal(err)
	}
	// The server's first flight: its handshake has computed, and waits.
	stalled.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadFull(stalled, make([]byte, 1)); err != nil {
		t.Fatalf("reading the server's first flight: %v", err)
	}

	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addrs[0], &tls.Config{ServerName: "localhost", RootCAs: w.pool})
	if err != nil {
		t.Fatalf("a handshake while another client stalls: %v", err)
	}
	defer c.Close()
	echoLine(t, c, "through")
}
