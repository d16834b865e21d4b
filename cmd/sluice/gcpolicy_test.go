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
		{25, 0, 100},            // nothing known yet: Go's default
		{25, 1 << 20, 100},      // 1 MiB live: 4 MiB of room needs 400%, capped
		{25, 4 << 20, 100},      // 4 MiB: 100% is 4 MiB
		{25, 8 << 20, 50},       // 8 MiB: 4 MiB is 50%
		{25, 10 << 20, 40},      // rounded up: 4 MiB at least
		{25, 16 << 20, 25},      // from here gc_percent's own share is more
		{25, 1 << 30, 25},       // ten thousand connections: gc_percent
		{50, 12 << 20, 50},      // a higher gc_percent is kept
		{200, 1 << 20, 200},     // above the cap: gc_percent as set
		{10, 100 << 20, 10},     // the lowest accepted
		{25, 3<<20 + 1, 100},    // just under 4 MiB
		{25, 6 << 20, 67},       // 4 MiB / 6 MiB, rounded up
		{25, 40 << 20, 25},      // 10% would be less than gc_percent
		{100, 1 << 20, 100},     // Go's default stays
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
	live <- 8 << 20
	waitTuned(50)
	g.setBase(75)
	g.mu.Lock()
	cur, got := g.current, append([]int(nil), set...)
	g.mu.Unlock()
	if cur != 75 {
		t.Fatalf("after setBase(75) with 8 MiB live: %d, want 75", cur)
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
	if want := []int{100, 25, 50, 75}; !equalInts(got, want) {
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
