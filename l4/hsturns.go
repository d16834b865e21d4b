package l4

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"sluice/tlsterm"
)

// ErrNoTurn is the error of a handshake that waited in vain for its turn
// to compute (see hsTurns).
var ErrNoTurn = errors.New("l4: no turn to compute the handshake")

// hsTurns lets TLS handshakes compute a few at a time, as many as Go runs
// goroutines at once, while the others wait for their turn without being
// runnable. In a reconnect storm thousands of handshakes are runnable at
// once; Go's scheduler runs them in turn, and a relay woken by its client
// waited behind all of them (S7: goroutines waited up to 3.2 s to run, the
// connections that stayed open echoed with p99 2.4 s). A handshake gives
// its turn back whenever it waits for the client (splice.Pacer), so a
// client that stalls holds nothing, and one coming back from such a wait
// goes before those not yet started, so that handshakes begun are
// finished before more begin. A new handshake waits for a turn at most
// handshake_timeout, as every phase has its deadline: under a flood that
// outruns the CPU, the connections that waited that long are shed rather
// than served after their clients gave up. (The S7 reconnects once blamed
// on this bound were the bench's own client timing out at sluice's 10 s
// handshake_timeout: bench/README.md, "The stayers' tail in storms,
// second try".)
//
// A new handshake also waits while goroutines that the network woke wait
// long to run (backlog, a netProbe): the turns hand on from one handshake
// to the next ahead of them, in Go's scheduler, and would otherwise start
// new handshakes while the connections open, and the handshakes waiting
// for their clients' answers, wait (netprobe.go).
//
// A turn given back goes straight to the next in line. Handing each one
// on through the probe instead (its byte's return) kept the connections
// open through a storm answering two to five times sooner, but held every
// hand-over for a trip through Go's run queue, and S7's full storm came
// back a fifth later (bench/README.md, "fourth try", and its reversal).
//
// There is one turn per CPU Go runs (GOMAXPROCS, read at each turn, so
// that it follows a container's CPU limit as Go does). Two per CPU, with at
// least four, kept the stayers' tail as it was in S7 (bench/README.md).
// It is the process's, shared by every listener and configuration.
//
// The turns engage only beyond freePerTurn handshakes in progress per
// turn. Below that, what the handshakes runnable at once can hold up a
// relay woken by its client is bounded anyway (64 of some 250 µs of
// computing each: 16 ms, about what Go's monitor takes to notice network
// events on a busy process), and the turns' hand-overs and probes cost
// 2.7% of S3's handshakes per CPU-second (64 clients; bench/README.md,
// "Turns only in a crowd").
type hsTurns struct {
	mu    sync.Mutex
	max   int       // turns at once; 0: GOMAXPROCS now, which follows the CPU limit; set before use (enter reads it unlocked)
	used  int       // turns held
	again list.List // *hsTurn coming back from a wait: served first
	fresh list.List // *hsTurn not started
	probe backlog   // nil: new handshakes start whenever a turn is free

	inProgress atomic.Int64 // handshakes begun and not ended, in turns or not
	// free is how many may be in progress, in the whole process, before
	// new ones take turns; 0: freePerTurn per turn, <0: none (tests).
	free atomic.Int64
}

// freePerTurn is how many handshakes per turn may be in progress before
// new ones take turns.
const freePerTurn = 64

// enter counts a handshake in progress and reports whether it is to take
// turns; leave counts it out.
func (t *hsTurns) enter() (crowded bool) {
	n := t.inProgress.Add(1)
	free := t.free.Load()
	if free == 0 {
		free = int64(freePerTurn * t.limit())
	}
	return n > free
}

func (t *hsTurns) leave() { t.inProgress.Add(-1) }

// backlog tells hsTurns whether goroutines that the network woke wait long
// to run (netProbe).
type backlog interface {
	send()      // start a measurement, unless one is under way
	late() bool // the one under way has taken too long
}

// startProbe starts the probe that new handshakes wait for; it does
// nothing if one runs.
func (t *hsTurns) startProbe() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.probe != nil {
		return nil
	}
	p, err := startNetProbe(t.readmit)
	if err != nil {
		return err
	}
	t.probe = p
	return nil
}

// stopProbe stops the probe, and lets waiting handshakes start.
func (t *hsTurns) stopProbe() {
	t.mu.Lock()
	p, _ := t.probe.(*netProbe)
	t.probe = nil
	t.mu.Unlock()
	if p != nil {
		p.close()
	}
	t.readmit()
}

// readmit hands out the turns free, now that the probe is back.
func (t *hsTurns) readmit() {
	t.mu.Lock()
	t.handLocked()
	t.mu.Unlock()
}

// mayStartLocked reports whether a new handshake may start as far as the
// backlog goes.
func (t *hsTurns) mayStartLocked() bool { return t.probe == nil || !t.probe.late() }

// startingLocked measures the backlog, as a new handshake starts.
func (t *hsTurns) startingLocked() {
	if t.probe != nil {
		t.probe.send()
	}
}

func newHSTurns(max int) *hsTurns {
	return &hsTurns{max: max}
}

func (t *hsTurns) limit() int {
	if t.max > 0 {
		return t.max
	}
	return runtime.GOMAXPROCS(0)
}

// handshakeInTurn runs the TLS handshake, computing in turn with the
// other handshakes of the process if the server has turns to share and
// more handshakes are in progress than go free (enter).
func (c *conn) handshakeInTurn(ctx context.Context, tc *tls.Conn) error {
	s := c.srv
	if s.turns == nil {
		return tlsterm.Handshake(ctx, tc, s.handshakeTimeout())
	}
	crowded := s.turns.enter()
	defer s.turns.leave()
	if !crowded {
		return tlsterm.Handshake(ctx, tc, s.handshakeTimeout())
	}
	// One handshake_timeout for the waits for a turn and the handshake,
	// as it bounded the run queue's waits and the handshake before the
	// turns: a connection that waited long has its client's patience used
	// up. Waits for a turn end with it too, so none outlasts it.
	timeout := s.handshakeTimeout()
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h := &hsTurn{t: s.turns, done: hctx.Done()}
	if !c.tr.SetPacer(h) {
		return tlsterm.Handshake(ctx, tc, timeout)
	}
	defer c.tr.SetPacer(nil)
	start := time.Now()
	if err := h.take(hctx); err != nil {
		if ctx.Err() == nil {
			return fmt.Errorf("tls handshake: %w within %s", ErrNoTurn, timeout)
		}
		return fmt.Errorf("tls handshake: %w", err)
	}
	defer h.Release()
	waited := time.Since(start)
	err := tlsterm.Handshake(hctx, tc, 0)
	if err != nil && ctx.Err() == nil && errors.Is(hctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("tls handshake: timed out after %s: %w", timeout, hctx.Err())
		if waited >= time.Millisecond {
			err = fmt.Errorf("%w (%s of it waiting for a turn)", err, waited.Round(time.Millisecond))
		}
	}
	return err
}

// hsTurn is one connection's place with hsTurns: its splice.Pacer while it
// handshakes. The zero value, with t set, holds no turn.
type hsTurn struct {
	t     *hsTurns
	done  <-chan struct{} // the handshake's end: Acquire waits no longer
	ready chan struct{}   // a turn was handed over; made on the first wait
	queue *list.List      // the queue it waits in, with elem its place
	elem  *list.Element
	held  bool
}

// take takes a turn for a handshake not yet started, waiting behind those
// in progress and those that came first, until ctx (the handshake's
// deadline) is done.
func (h *hsTurn) take(ctx context.Context) error {
	t := h.t
	t.mu.Lock()
	if t.used < t.limit() && t.again.Len() == 0 && t.fresh.Len() == 0 && t.mayStartLocked() {
		t.used++
		t.startingLocked()
		t.mu.Unlock()
		h.held = true
		return nil
	}
	h.queueLocked(&t.fresh)
	t.mu.Unlock()
	select {
	case <-h.ready:
		h.held = true
		return nil
	case <-ctx.Done():
		h.giveUp()
		return ctx.Err()
	}
}

// giveUp leaves the queue it waits in; a turn handed over meanwhile goes
// to the next in line.
func (h *hsTurn) giveUp() {
	t := h.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if h.elem != nil {
		h.queue.Remove(h.elem)
		h.elem, h.queue = nil, nil
		return
	}
	<-h.ready
	t.used--
	t.handLocked()
}

// Acquire takes a turn again after a wait for the client, before the
// handshakes not yet started. It waits no longer than the handshake may
// last: then the handshake goes on without a turn, to find its end.
func (h *hsTurn) Acquire() {
	t := h.t
	t.mu.Lock()
	if t.used < t.limit() && t.again.Len() == 0 {
		t.used++
		t.mu.Unlock()
		h.held = true
		return
	}
	h.queueLocked(&t.again)
	t.mu.Unlock()
	select {
	case <-h.ready:
		h.held = true
	case <-h.done:
		h.giveUp()
	}
}

// Release gives the turn back, to the next in line.
func (h *hsTurn) Release() {
	if !h.held {
		return
	}
	h.held = false
	t := h.t
	t.mu.Lock()
	t.used--
	t.handLocked()
	t.mu.Unlock()
}

func (h *hsTurn) queueLocked(q *list.List) {
	if h.ready == nil {
		h.ready = make(chan struct{}, 1)
	}
	h.queue, h.elem = q, q.PushBack(h)
}

// handLocked hands the free turns out, first to the handshakes coming back
// from a wait, then to new ones while the backlog allows.
func (t *hsTurns) handLocked() {
	for t.used < t.limit() {
		q := &t.again
		if q.Len() == 0 {
			if t.fresh.Len() == 0 || !t.mayStartLocked() {
				return
			}
			q = &t.fresh
			t.startingLocked()
		}
		e := q.Front()
		if e == nil {
			return
		}
		h := q.Remove(e).(*hsTurn)
		h.elem, h.queue = nil, nil
		t.used++
		h.ready <- struct{}{}
	}
}
