package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// gc_percent = 25 keeps RSS near the live heap when that heap is large:
// thousands of connections' TLS state. With a small live heap, a burst of
// handshakes pays for it instead: Go scales its 4 MiB minimum heap by
// GOGC too, so at 25 a collection runs after every megabyte allocated,
// some 30 full handshakes, and GC took a tenth of S3's CPU. The policy
// keeps gc_percent's proportion for large heaps but never lets the room
// to grow before the next collection fall below minHeadroom: it raises
// the percentage while the live heap is smaller than minHeadroom*100/
// gc_percent (32 MiB at 25), up to maxTunedPercent. Idle memory is
// unchanged wherever it matters per connection: with ten thousand
// connections the heap is far past that, and an idle process's free heap
// goes back to the OS through the trimmer (memtrim.go).
//
// It re-tunes after each GC, from a finalizer, as the runtime offers no
// hook; reading the live heap and setting the percentage stop nothing.

// minHeadroom is the least the heap may grow past live memory before a
// collection. 8 MiB halves the collections of a small heap under a burst
// of handshakes against Go's own 4 MiB minimum (S3 +2.5% side by side,
// bench/README.md); 16 MiB bought no more.
const minHeadroom = 8 << 20

// maxTunedPercent bounds the raised percentage: at 200 Go's minimum heap
// (4 MiB at 100, scaled by the percentage) is minHeadroom; above, it would
// grow with the percentage.
const maxTunedPercent = 200

// gcPercentFor is the GC percentage for a live heap of live bytes when
// gc_percent is base.
func gcPercentFor(base int, live uint64) int {
	if base >= maxTunedPercent || live == 0 {
		return max(base, maxTunedPercent)
	}
	p := int((minHeadroom*100 + live - 1) / live)
	return min(max(p, base), maxTunedPercent)
}

// gcPolicy applies gcPercentFor after every GC cycle. The zero value is
// not usable; see newGCPolicy.
type gcPolicy struct {
	live func() uint64   // live heap at the last GC
	set  func(p int) int // debug.SetGCPercent
	// tuned, if set, is called after each re-tune with the percentage
	// in force (tests).
	tuned func(p int)

	mu      sync.Mutex
	base    int // gc_percent
	current int // the percentage last set
	stopped bool
}

// newGCPolicy sets the GC percentage for base and re-tunes it after every
// GC until stop. live and set are the runtime's when nil.
func newGCPolicy(base int, live func() uint64, set func(int) int) *gcPolicy {
	if live == nil {
		live = liveHeap
	}
	if set == nil {
		set = debug.SetGCPercent
	}
	g := &gcPolicy{live: live, set: set, base: base, current: -1}
	g.retune()
	g.arm()
	return g
}

// setBase changes gc_percent (a reload).
func (g *gcPolicy) setBase(base int) {
	g.mu.Lock()
	g.base = base
	g.mu.Unlock()
	g.retune()
}

// stop ends the re-tuning; the percentage last set stays.
func (g *gcPolicy) stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
}

// retune sets the percentage for the live heap, if it changed.
func (g *gcPolicy) retune() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	if p := gcPercentFor(g.base, g.live()); p != g.current {
		g.set(p)
		g.current = p
	}
	if g.tuned != nil {
		g.tuned(g.current)
	}
}

// gcSentinel is garbage as soon as it is made; its finalizer runs once a
// GC has found that out, re-tunes and re-arms itself.
type gcSentinel struct{ g *gcPolicy }

func (g *gcPolicy) arm() {
	runtime.SetFinalizer(&gcSentinel{g}, afterGC)
}

func afterGC(s *gcSentinel) {
	s.g.mu.Lock()
	stopped := s.g.stopped
	s.g.mu.Unlock()
	if stopped {
		return
	}
	s.g.retune()
	s.g.arm()
}

// liveHeap reads the live heap found by the last GC.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
