//go:build linux

package l4

import (
	"testing"
	"time"
)

// awaitBack waits for the probe's callback, or fails the test.
func awaitBack(t *testing.T, back <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-back:
	case <-time.After(testTimeout):
		t.Fatal(what)
	}
}

// TestNetProbe: a byte sent comes back through the probe's goroutine; one
// byte is away at a time; a byte away longer than probeLate makes the
// probe late; a closed probe is never late, says so once as it stops, and
// writes nothing when asked to send.
func TestNetProbe(t *testing.T) {
	back := make(chan struct{}, 8)
	p, err := startNetProbe(func() { back <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for range 3 {
		p.send()
		awaitBack(t, back, "the probe's byte did not come back")
		if p.late() {
			t.Fatal("late with the byte back")
		}
	}

	// As if a byte had been sent 2*probeLate ago and not read yet (none
	// was: the reader does not clear it). A send then sends nothing.
	away := int64(time.Since(p.epoch)-2*probeLate) + 1
	p.sent.Store(away)
	p.send()
	if got := p.sent.Load(); got != away {
		t.Fatalf("a send with a byte away changed it: %d, was %d", got, away)
	}
	if !p.late() {
		t.Fatal("not late with a byte away for twice probeLate")
	}

	p.close()
	awaitBack(t, back, "the stopping probe did not let waiters go")
	if p.late() {
		t.Fatal("a closed probe is late with a byte away: nobody would read it")
	}
	p.sent.Store(0)
	p.send() // onto no descriptor: the number may be another's by now
	if got := p.sent.Load(); got != 0 {
		t.Fatalf("a closed probe has a byte away (%d): it wrote one", got)
	}
}
