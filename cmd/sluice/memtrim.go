package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// A burst of connections leaves memory in the Go heap that only a GC can
// free: the stacks that setup goroutines grew while dialing or
// handshaking, and, once the connections close, their TLS state. The
// runtime returns free memory to the OS towards a goal it recomputes only
// at the end of a GC, and a process that allocates little afterwards (idle
// connections, or light keep-alive traffic) may not run a GC for two
// minutes, so RSS stays at the burst's peak. The trimmer notices that case
// and runs debug.FreeOSMemory: a GC, then a scavenge of all free memory at
// once (after a plain GC the scavenger keeps some 2.2 times the live heap).
//
// It judges load by how fast the heap grows, not by CPU: a process that
// allocates fast runs GCs of its own, and the scavenger follows them, while
// one that relays bytes without allocating is never trimmed by its own GCs.
// The GC is worth forcing when much memory is certainly spare (free pages,
// stacks beyond what goroutines used), or when the last GC ran while the
// heap was in flux: what it found live, the state of a burst's
// connections, may be garbage now, which no figure shows before a GC.

// memSample is what the trimmer reads from the runtime.
type memSample struct {
	free     uint64 // heap memory free and not yet returned to the OS
	stacks   uint64 // heap memory reserved for goroutine stacks, used or not
	inUse    uint64 // stack memory scanned (in use) at the last GC
	objects  uint64 // heap memory in spans for objects: live, dead since the last GC, or unused
	live     uint64 // live heap at the last GC
	goal     uint64 // heap size at which the next GC is due
	allocs   uint64 // heap memory allocated since the process started
	gcCycles uint64 // GC cycles completed
	conns    int64  // connections open (see trimmer.conns)
}

// spare estimates free memory the runtime holds: free heap pages and stack
// space beyond what goroutines used at the last GC (an overestimate while
// many goroutines are alive, which trimmer.due backs off from).
func (s memSample) spare() uint64 {
	sp := s.free
	if s.stacks > s.inUse {
		sp += s.stacks - s.inUse
	}
	return sp
}

// held is the heap memory that the runtime has not returned to the OS and
// that a GC and a scavenge could shrink: object spans, free pages and
// stacks.
func (s memSample) held() uint64 { return s.objects + s.free + s.stacks }

// trimmer decides when a GC is worth forcing. The zero value has the
// defaults; read and gc are the runtime's unless set.
type trimmer struct {
	every    time.Duration // how often to look; 0 means 1s
	quiet    time.Duration // no GC and a calm heap for this long first; 0 means 2s
	minGap   time.Duration // between forced GCs; 0 means 10s, doubled while they return little
	minSpare uint64        // smallest spare worth a GC; 0 means 16 MiB
	logger   *slog.Logger
	read     func() memSample
	gc       func()
	// conns counts open connections, if set: a burst of connections
	// opening leaves nothing stale for a GC to free, one closing does.
	conns func() int64
	// trimmed, if set, is called after each forced GC (a metric).
	trimmed func()

	cycles     uint64    // GC cycles at the last look
	connsAtGC  int64     // connections open when a GC was last seen
	lastGC     time.Time // when a GC was last seen to complete
	prevAt     time.Time // the last look
	prevAllocs uint64
	calm       time.Time // since when the heap has grown slowly (see fast)
	busy       time.Time // the last look at which it grew fast
	last       time.Time // when the trimmer last forced one; zero: never
	before     uint64    // held memory when it did
	lowest     uint64    // the least held memory seen since
	gap        time.Duration
}

// busyHorizon: a heap that grows fast enough to reach the runtime's next
// GC within this time is busy. A burst of connections opening or closing
// grows it that fast, and so does real load (which runs GCs of its own);
// light traffic and connections closing now and then grow it far slower.
const busyHorizon = 8 * time.Second

// due reports whether to force a GC now: for t.quiet no GC has run and the
// heap has been calm, the last forced GC was long enough ago, and either
// spare memory is large in absolute terms and against the live heap (a GC
// costs in proportion to the live heap), or the heap has been busy since
// the last GC and holds enough to be worth one.
func (t *trimmer) due(s memSample, now time.Time) bool {
	if t.gap == 0 {
		t.gap = t.gapMin()
	}
	if s.gcCycles != t.cycles || t.lastGC.IsZero() {
		t.cycles, t.lastGC, t.connsAtGC = s.gcCycles, now, s.conns
	}
	switch {
	case t.prevAt.IsZero():
		t.calm = now
	case t.fast(s, now):
		t.calm, t.busy = now, now
	}
	t.prevAt, t.prevAllocs = now, s.allocs
	held := s.held()
	t.lowest = min(t.lowest, held)
	if now.Sub(t.lastGC) < t.quietFor() || now.Sub(t.calm) < t.quietFor() {
		return false
	}
	sp := s.spare()
	spare := sp >= t.spareMin() && sp >= s.live/4
	// The last GC ran during or before the busy spell (a GC seen at the
	// same look counts: it may have run before the busy part of it).
	// Stale: what the last GC found live may be garbage now, because the
	// heap grew fast since (a burst) and at least a quarter of the
	// connections then open have closed. A burst of connections opening
	// (S5: 9,744 WebSockets) is left to the runtime: a forced GC would find
	// them all live, and cost latency for nothing.
	stale := !t.busy.Before(t.lastGC) && held >= t.spareMin() && s.conns*4 <= t.connsAtGC*3
	if !spare && !stale {
		return false
	}
	if t.last.IsZero() {
		return true
	}
	if now.Sub(t.last) < t.gap {
		return false
	}
	// The last forced GC should have returned a good part of what the
	// heap held then. If it did not, the estimate is off (many live
	// goroutines with big stacks, or a burst of connections that stayed
	// open): wait longer before the next.
	if t.lowest+t.spareMin()/2 > t.before {
		t.gap = min(2*t.gap, 5*time.Minute)
		t.last = now
		return false
	}
	t.gap = t.gapMin()
	return true
}

// fast reports whether the heap grew since the last look fast enough to
// reach the runtime's next GC within busyHorizon, measuring from one GC's
// live heap to its goal.
func (t *trimmer) fast(s memSample, now time.Time) bool {
	if s.allocs <= t.prevAllocs {
		return false
	}
	var runway uint64
	if s.goal > s.live {
		runway = s.goal - s.live
	}
	return float64(s.allocs-t.prevAllocs)*float64(busyHorizon) > float64(runway)*float64(now.Sub(t.prevAt))
}

// done records a forced GC.
func (t *trimmer) done(s memSample, now time.Time) {
	t.last, t.before, t.lowest = now, s.held(), s.held()
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
			if t.conns != nil {
				s.conns = t.conns()
			}
			if !t.due(s, now) {
				continue
			}
			gc()
			t.done(s, now)
			if t.trimmed != nil {
				t.trimmed()
			}
			if t.logger != nil {
				t.logger.Debug("forced a GC so that spare memory goes back to the OS",
					"held_mib", s.held()>>20, "spare_mib", s.spare()>>20, "live_mib", s.live>>20,
					"took", time.Since(now).Round(time.Millisecond))
			}
		}
	}
}

var memMetrics = [...]string{
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/gc/scan/stack:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/gc/heap/live:bytes",
	"/gc/heap/goal:bytes",
	"/gc/heap/allocs:bytes",
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
	return memSample{free: u(0), stacks: u(1), inUse: u(2), objects: u(3) + u(4), live: u(5), goal: u(6), allocs: u(7), gcCycles: u(8)}
}
