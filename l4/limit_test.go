package l4

import "testing"

// ready reports whether w has been handed its slot.
func ready(w *limitWaiter) bool {
	select {
	case <-w.ready:
		return true
	default:
		return false
	}
}

// TestConnLimitHandsSlotsInOrder: a slot given back goes to the oldest
// waiter, and to it alone; a waiter that withdraws leaves the queue, and
// gives back a slot handed to it meanwhile.
func TestConnLimitHandsSlotsInOrder(t *testing.T) {
	l := newConnLimit(2)
	for i := range 2 {
		if ok, _ := l.take(); !ok {
			t.Fatalf("take %d under the limit refused", i)
		}
	}
	var ws []*limitWaiter
	for i := range 4 {
		ok, w := l.take()
		if ok || w == nil {
			t.Fatalf("take %d over the limit: ok %v, waiter %v", i, ok, w)
		}
		ws = append(ws, w)
	}
	l.withdraw(ws[1]) // leaves the queue: the next slot skips it
	l.give()
	if !ready(ws[0]) || ready(ws[2]) || ready(ws[3]) {
		t.Fatalf("one slot given back: ready %v %v %v, want only the oldest", ready(ws[0]), ready(ws[2]), ready(ws[3]))
	}
	l.give()
	if !ready(ws[2]) || ready(ws[3]) {
		t.Fatalf("second slot given back: ready %v %v, want the next waiter only", ready(ws[2]), ready(ws[3]))
	}
	// A newcomer does not jump the queue while a slot is free only for
	// the waiter it was handed to.
	if ok, w := l.take(); ok {
		t.Fatal("take while ws[3] queues: got a slot")
	} else {
		l.withdraw(w)
	}
	// A slot handed to a waiter that then withdraws is given back.
	l.give()
	if !ready(ws[3]) {
		t.Fatal("third slot given back: ws[3] not ready")
	}
	l.withdraw(ws[3])
	if l.used != 1 {
		t.Fatalf("after ws[3] withdrew with its slot: %d used, want 1 (ws[2]'s)", l.used)
	}
	// Raising the limit hands the new slots out at once.
	if ok, _ := l.take(); !ok {
		t.Fatal("take with one slot free refused")
	}
	_, c := l.take()
	_, d := l.take()
	l.setMax(4)
	if !ready(c) || !ready(d) || l.used != 4 {
		t.Fatalf("setMax(4): ready %v %v, %d used; want both, 4", ready(c), ready(d), l.used)
	}
	l.setMax(0)
	if ok, _ := l.take(); !ok {
		t.Fatal("no limit: take refused")
	}
}
