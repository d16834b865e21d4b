package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"syscall"
	"time"
)

// A burst of new connections leaves memory behind in the Go runtime: each
// connection's setup runs on a goroutine whose stack grows to 8 KiB or more
// while it dials or handshakes, and ends once the relay starts (an idle
// relay holds no goroutine). After the burst those stacks sit with dead
// goroutines or free in the heap, counted in RSS. The runtime's scavenger
// returns free memory to the OS, but towards a goal it recomputes only at
// the end of a GC cycle, and a process whose connections have gone idle
// allocates nothing and may not run a GC for two minutes. The trimmer
// notices that case (much spare memory, no GC and next to no CPU used for
// a while) and runs debug.FreeOSMemory: a GC, which frees the dead
// goroutines' stacks, then a scavenge of all free memory at once. Left to
// the background scavenger after a plain GC, the memory came back only
// down to the runtime's retention goal (some 2.2 times the live heap), so
// what 9,744 idle plain connections cost varied from 4.4 to 9.0 KiB each
// between runs; with the scavenge, 4.3-4.9. The scavenge holds the heap
// lock, so allocations wait for it: at 9,700 connections the whole call
// took 10 ms against 6 ms for the GC alone, which a process that has been
// all but idle for seconds can afford. A process that is serving traffic
// is left alone: a GC of a large heap on one CPU costs milliseconds of
// latency, and such a process runs GCs of its own (the runtime forces one
// every two minutes anyway).

// memSample is what the trimmer reads from the runtime.
type memSample struct {
	free     uint64        // heap memory free and not yet returned to the OS
	stacks   uint64        // heap memory reserved for goroutine stacks, used or not
	inUse    uint64        // stack memory scanned (in use) at the last GC
	live     uint64        // live heap at the last GC
	gcCycles uint64        // GC cycles completed
	cpu      time.Duration // CPU time the process has used (user + system)
}

// spare estimates free memory the runtime holds: free heap pages and stack
// space beyond what goroutines used at the last GC (an overestimate while
// many goroutines are alive; see trimmer.done).
func (s memSample) spare() uint64 {
	sp := s.free
	if s.stacks > s.inUse {
		sp += s.stacks - s.inUse
	}
	return sp
}

// trimmer decides when a GC is worth forcing. The zero value has the
// defaults; read and gc are the runtime's unless set.
type trimmer struct {
	every    time.Duration // how often to look; 0 means 1s
	quiet    time.Duration // no GC and no load for this long first; 0 means 2s
	minGap   time.Duration // between forced GCs; 0 means 10s, doubled while they return little
	minSpare uint64        // smallest spare worth a GC; 0 means 16 MiB
	logger   *slog.Logger
	read     func() memSample
	gc       func()

	cycles  uint64    // GC cycles at the last look
	lastGC  time.Time // when a GC was last seen to complete
	prevAt  time.Time // the last look
	prevCPU time.Duration
	idle    time.Time // since when the process has used under maxLoad of a CPU
	last    time.Time // when the trimmer last forced one; zero: never
	before  uint64    // spare when it did
	lowest  uint64    // the least spare seen since
	gap     time.Duration
}

// maxLoad is the share of one CPU under which the process counts as idle.
const maxLoad = 0.02

// due reports whether to force a GC now: spare memory is large in absolute
// terms and against the live heap (a GC costs in proportion to the live
// heap), for t.quiet no GC has run and the process has been all but idle,
// and the last forced GC was long enough ago.
func (t *trimmer) due(s memSample, now time.Time) bool {
	if t.gap == 0 {
		t.gap = t.gapMin()
	}
	if s.gcCycles != t.cycles || t.lastGC.IsZero() {
		t.cycles, t.lastGC = s.gcCycles, now
	}
	if t.prevAt.IsZero() || float64(s.cpu-t.prevCPU) > maxLoad*float64(now.Sub(t.prevAt)) {
		t.idle = now
	}
	t.prevAt, t.prevCPU = now, s.cpu
	sp := s.spare()
	t.lowest = min(t.lowest, sp)
	if sp < t.spareMin() || sp < s.live/4 || now.Sub(t.lastGC) < t.quietFor() || now.Sub(t.idle) < t.quietFor() {
		return false
	}
	if t.last.IsZero() {
		return true
	}
	if now.Sub(t.last) < t.gap {
		return false
	}
	// The last forced GC should have returned most of what was spare
	// then. If it did not, the estimate is off (many live goroutines with
	// big stacks, say): wait longer before the next.
	if t.lowest+t.spareMin()/2 > t.before {
		t.gap = min(2*t.gap, 5*time.Minute)
		t.last = now
		return false
	}
	t.gap = t.gapMin()
	return true
}

// done records a forced GC.
func (t *trimmer) done(s memSample, now time.Time) {
	t.last, t.before, t.lowest = now, s.spare(), s.spare()
}

func (t *trimmer) spareMin() uint64 {
	if t.minSpare == 0 {
		return 16 << 20
	}
	return t.minSpare
}

func (t *trimmer) quietFor() time.Duration {
	if t.quiet == 0 {
		return 2 * time.Second
	}
	return t.quiet
}

func (t *trimmer) gapMin() time.Duration {
	if t.minGap == 0 {
		return 10 * time.Second
	}
	return t.minGap
}

// run looks every t.every until ctx is done.
func (t *trimmer) run(ctx context.Context) {
	every := t.every
	if every == 0 {
		every = time.Second
	}
	read, gc := t.read, t.gc
	if read == nil {
		read = readMemSample
	}
	if gc == nil {
		gc = debug.FreeOSMemory
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s := read()
			if !t.due(s, now) {
				continue
			}
			gc()
			t.done(s, now)
			if t.logger != nil {
				t.logger.Debug("forced a GC so that spare memory goes back to the OS",
					"spare_mib", s.spare()>>20, "live_mib", s.live>>20, "took", time.Since(now).Round(time.Millisecond))
			}
		}
	}
}

var memMetrics = [...]string{
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/gc/scan/stack:bytes",
	"/gc/heap/live:bytes",
	"/gc/cycles/total:gc-cycles",
}

func readMemSample() memSample {
	var s [len(memMetrics)]metrics.Sample
	for i, name := range memMetrics {
		s[i].Name = name
	}
	metrics.Read(s[:])
	u := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return memSample{free: u(0), stacks: u(1), inUse: u(2), live: u(3), gcCycles: u(4), cpu: processCPU()}
}

// processCPU is the CPU time the process has used; zero if unknown (then
// the process always looks idle).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
