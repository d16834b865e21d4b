//go:build linux

package l4

import (
	"testing"
	"time"
)

// TestNetProbe: a byte sent comes back through the probe's goroutine; a
// byte away longer than probeLate makes the probe late; a closed probe is
// never late, and sending on it is harmless.
func TestNetProbe(t *testing.T) {
	back := make(chan struct{}, 1)
	p, err := startNetProbe(func() { back <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for range 3 {
		p.send()
		p.send() // one away at a time
		select {
		case <-back:
		case <-time.After(testTimeout):
			t.Fatal("the probe's byte did not come back")
		}
		select {
		case <-back:
			t.Fatal("two bytes came back for one")
		default:
		}
		if p.late() {
			t.Fatal("late with the byte back")
		}
	}

	// As if a byte had been sent 2*probeLate ago and not read yet.
	p.sent.Store(int64(time.Since(p.epoch)-2*probeLate) + 1)
	if !p.late() {
		t.Fatal("not late with a byte away for twice probeLate")
	}
	p.close()
	if p.late() {
		t.Fatal("a closed probe is late")
	}
	p.send()
	if p.late() {
		t.Fatal("a closed probe is late after a send")
	}
}
