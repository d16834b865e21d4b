package main

import (
	"runtime"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		base int
		live uint64
		want int
	}{
		{25, 0, 200},            // nothing known yet: Go's minimum heap at 8 MiB
		{25, 1 << 20, 200},      // 1 MiB live: 8 MiB of room needs 800%, capped
		{25, 4 << 20, 200},      // 4 MiB: 200% is 8 MiB
		{25, 8 << 20, 100},      // 8 MiB: 8 MiB is 100%
		{25, 16 << 20, 50},      // 16 MiB: 50%
		{25, 20 << 20, 40},      // rounded up: 8 MiB at least
		{25, 32 << 20, 25},      // from here gc_percent's own share is more
		{25, 1 << 30, 25},       // ten thousand connections: gc_percent
		{50, 12 << 20, 67},      // 8 MiB of 12, rounded up, over gc_percent
		{50, 24 << 20, 50},      // a higher gc_percent is kept
		{300, 1 << 20, 300},     // above the cap: gc_percent as set
		{10, 100 << 20, 10},     // the lowest accepted
		{25, 4<<20 - 1, 200},    // just under 4 MiB: capped
		{25, 12 << 20, 67},      // 8 MiB / 12 MiB, rounded up
		{25, 80 << 20, 25},      // 10% would be less than gc_percent
		{100, 1 << 20, 200},     // Go's default raised for a small heap
		{100, 64 << 20, 100},    // and kept for a larger one
		{1000, 500 << 20, 1000}, // the highest accepted
	} {
		if got := gcPercentFor(tc.base, tc.live); got != tc.want {
			t.Errorf("gcPercentFor(%d, %d MiB) = %d, want %d", tc.base, tc.live>>20, got, tc.want)
		}
	}
}

// TestGCPolicyRetunesAfterGC checks the policy follows the live heap from
// one GC to the next, takes a new gc_percent at once, and stops.
func TestGCPolicyRetunesAfterGC(t *testing.T) {
	live := make(chan uint64, 1)
	live <- 1 << 20
	var set []int
	tuned := make(chan int, 1)
	g := newGCPolicy(25, func() uint64 {
		v := <-live
		live <- v
		return v
	}, func(p int) int { set = append(set, p); return 0 })
	g.mu.Lock()
	g.tuned = func(p int) {
		select {
		case tuned <- p:
		default: // the test has not read the last one yet
		}
	}
	g.mu.Unlock()
	defer g.stop()

	// afterGC runs on the finalizer goroutine once a GC has seen the
	// sentinel: force GCs until it reports the new live heap.
	waitTuned := func(want int) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			runtime.GC()
			select {
			case p := <-tuned:
				if p == want {
					return
				}
			case <-deadline:
				t.Fatalf("no re-tune to %d after GCs (set %v)", want, set)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	<-live
	live <- 64 << 20
	waitTuned(25)
	<-live
	live <- 16 << 20
	waitTuned(50)
	g.setBase(75)
	g.mu.Lock()
	cur, got := g.current, append([]int(nil), set...)
	g.mu.Unlock()
	if cur != 75 {
		t.Fatalf("after setBase(75) with 16 MiB live: %d, want 75", cur)
	}
	g.stop()
	<-live
	live <- 1 << 20
	for range 3 {
		runtime.GC()
	}
	g.mu.Lock()
	if g.current != 75 {
		t.Errorf("after stop: re-tuned to %d", g.current)
	}
	g.mu.Unlock()
	if want := []int{200, 25, 50, 75}; !equalInts(got, want) {
		t.Errorf("percentages set %v, want %v (each once, in order)", got, want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
