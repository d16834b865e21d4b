package l4

import (
	"container/list"
	"sync"
)

// connLimit bounds the connections of one listener, or the handshakes of
// the process (max_handshakes). It outlives a reload: the servers of the
// old and the new configuration share it, so that the connections the old
// one still holds count against the new limit too, which a reload may
// change (setMax).
//
// Those who find it full queue, oldest first, and a slot given back is
// handed to the oldest: in a reconnect storm thousands of handshakes wait
// for max_handshakes, and waking them all for each slot (as a closed
// channel would) cost more CPU than the handshakes (S7: 20.5 CPU-s against
// 7.9 without a limit, bench/README.md).
type connLimit struct {
	mu      sync.Mutex
	max     int // 0: no limit
	used    int // slots taken
	waiters list.List
}

// limitWaiter is a place in a connLimit's queue: the slot is the waiter's
// once ready is closed.
type limitWaiter struct {
	ready chan struct{}
	elem  *list.Element
}

func newConnLimit(max int) *connLimit {
	return &connLimit{max: max}
}

// take takes a slot if one is free and nobody queues for one. Otherwise
// it queues the caller: the slot is its once w.ready is closed; withdraw
// leaves the queue.
func (l *connLimit) take() (ok bool, w *limitWaiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max == 0 || (l.used < l.max && l.waiters.Len() == 0) {
		l.used++
		return true, nil
	}
	w = &limitWaiter{ready: make(chan struct{})}
	w.elem = l.waiters.PushBack(w)
	return false, w
}

// withdraw takes w out of the queue, giving back the slot it was handed
// meanwhile, if any.
func (l *connLimit) withdraw(w *limitWaiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-w.ready:
		l.used--
		l.handLocked()
	default:
		l.waiters.Remove(w.elem)
	}
}

// takeAnyway takes a slot even over the limit, for a connection accepted
// elsewhere (moved from an old process): it is there already.
func (l *connLimit) takeAnyway() {
	l.mu.Lock()
	l.used++
	l.mu.Unlock()
}

// give gives a slot back.
func (l *connLimit) give() {
	l.mu.Lock()
	l.used--
	l.handLocked()
	l.mu.Unlock()
}

// setMax changes the limit; connections over a lowered one stay, and no
// new one is taken until they are under it.
func (l *connLimit) setMax(max int) {
	l.mu.Lock()
	l.max = max
	l.handLocked()
	l.mu.Unlock()
}

// handLocked hands the free slots to the oldest waiters.
func (l *connLimit) handLocked() {
	for l.waiters.Len() > 0 && (l.max == 0 || l.used < l.max) {
		w := l.waiters.Remove(l.waiters.Front()).(*limitWaiter)
		l.used++
		close(w.ready)
	}
}
