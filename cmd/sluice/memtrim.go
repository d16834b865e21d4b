package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// A burst of new connections leaves memory behind in the Go runtime: each
// connection's setup runs on a goroutine whose stack grows to 8 KiB or more
// while it dials or handshakes, and ends once the relay starts (an idle
// relay holds no goroutine). After the burst those stacks sit free in the
// heap, counted in RSS, and the runtime's own scavenger returns them only
// once a GC recomputes its goal, which an idle process may not run for two
// minutes. The trimmer notices spare memory that has stopped being drawn
// down and hands it back at once (a GC and a scavenge, as HAProxy trims its
// allocator after releasing pools).

// memSample is what the trimmer reads from the runtime.
type memSample struct {
	free   uint64 // heap memory free and not yet returned to the OS
	stacks uint64 // heap memory reserved for goroutine stacks, used or not
	inUse  uint64 // stack memory in use at the last GC
	live   uint64 // live heap at the last GC
}

// spare is free memory the runtime holds: free heap pages and stack space
// beyond what goroutines used at the last GC.
func (s memSample) spare() uint64 {
	sp := s.free
	if s.stacks > s.inUse {
		sp += s.stacks - s.inUse
	}
	return sp
}

// trimmer decides when returning memory is worth a forced GC. The zero
// value has the defaults; read and trim are the runtime's unless set.
type trimmer struct {
	every   time.Duration // how often to look; 0 means 1s
	minGap  time.Duration // between trims; 0 means 10s, doubled while trims return little
	minKeep uint64        // smallest spare worth a trim; 0 means 16 MiB
	logger  *slog.Logger
	read    func() memSample
	trim    func()

	prev    uint64 // spare at the last look
	last    time.Time
	gap     time.Duration
	trimmed bool
}

// due reports whether to trim now: spare memory is large in absolute terms
// and against the live heap (a forced GC costs in proportion to the live
// heap), it is not being drawn down (the burst is over), and the last trim
// was long enough ago.
func (t *trimmer) due(s memSample, now time.Time) bool {
	sp := s.spare()
	prev := t.prev
	t.prev = sp
	if t.gap == 0 {
		t.gap = t.gapMin()
	}
	if sp < t.minSpare() || sp < s.live/4 || sp < prev {
		return false
	}
	return !t.trimmed || now.Sub(t.last) >= t.gap
}

// done records a trim that released released bytes: a trim that returned
// little means the spare estimate is off (say, many busy goroutines with
// big stacks), so the next one waits longer.
func (t *trimmer) done(released uint64, now time.Time) {
	t.trimmed, t.last = true, now
	if released < t.minSpare()/2 {
		t.gap = min(2*t.gap, 5*time.Minute)
	} else {
		t.gap = t.gapMin()
	}
}

func (t *trimmer) minSpare() uint64 {
	if t.minKeep == 0 {
		return 16 << 20
	}
	return t.minKeep
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
	read, trim := t.read, t.trim
	if read == nil {
		read = readMemSample
	}
	if trim == nil {
		trim = debug.FreeOSMemory
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
			trim()
			after := read()
			released := s.spare() - min(after.spare(), s.spare())
			t.done(released, now)
			t.prev = after.spare()
			if t.logger != nil {
				t.logger.Debug("returned spare memory to the OS", "spare_mib", s.spare()>>20,
					"released_mib", released>>20, "took", time.Since(now).Round(time.Millisecond))
			}
		}
	}
}

var memMetrics = [...]string{
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/gc/scan/stack:bytes",
	"/gc/heap/live:bytes",
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
	return memSample{free: u(0), stacks: u(1), inUse: u(2), live: u(3)}
}
