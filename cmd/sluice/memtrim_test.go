package main

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestTrimmerDue(t *testing.T) {
	const kib, mib = 1 << 10, 1 << 20
	t0 := time.Unix(1000, 0)
	type look struct {
		s    memSample
		at   time.Duration // after t0
		want bool          // a forced GC; the test records it with done
	}
	// After a burst: free heap and dead goroutines' stacks, no GC running.
	burst := memSample{free: 40 * mib, stacks: 30 * mib, inUse: 1 * mib, live: 30 * mib, goal: 38 * mib, gcCycles: 7}
	// What the scavenger leaves once a GC has set its goal.
	after := memSample{free: 2 * mib, stacks: 1 * mib, inUse: 1 * mib, live: 30 * mib, gcCycles: 8}
	// A burst of connections whose last GC ran while they were open: little
	// is spare, but once they close, most of the objects are garbage.
	conns := memSample{free: 8 * mib, stacks: 1 * mib, inUse: 1 * mib, objects: 38 * mib, live: 35 * mib, goal: 44 * mib, gcCycles: 70}
	// Half of them closed: the forced GC returned 20 MiB.
	half := memSample{free: 1 * mib, stacks: 1 * mib, inUse: 1 * mib, objects: 18 * mib, live: 18 * mib, goal: 23 * mib, gcCycles: 79}
	small := memSample{free: 2 * mib, stacks: 1 * mib, inUse: 1 * mib, objects: 8 * mib, live: 6 * mib, goal: 8 * mib, gcCycles: 9}
	for _, tc := range []struct {
		name  string
		looks []look
	}{
		{"small spare is kept", []look{
			{s: memSample{free: 4 * mib, live: 8 * mib}},
			{s: memSample{free: 4 * mib, live: 8 * mib}, at: time.Minute},
		}},
		{"spare small against the live heap is kept", []look{
			{s: memSample{free: 20 * mib, live: 200 * mib}},
			{s: memSample{free: 20 * mib, live: 200 * mib}, at: time.Minute},
		}},
		{"stacks in use are not spare", []look{
			{s: memSample{free: 1 * mib, stacks: 80 * mib, inUse: 79 * mib, live: 8 * mib}},
			{s: memSample{free: 1 * mib, stacks: 80 * mib, inUse: 79 * mib, live: 8 * mib}, at: time.Minute},
		}},
		{"waits for the GCs to stop", []look{
			{s: burst},
			{s: burst, at: time.Second},
			{s: withCycles(burst, 8), at: 2 * time.Second}, // a GC of the process's own
			{s: withCycles(burst, 8), at: 3 * time.Second},
			{s: withCycles(burst, 8), at: 4 * time.Second, want: true},
		}},
		{"a busy process is left alone", []look{
			{s: withCycles(burst, 1)},
			{s: withCycles(burst, 2), at: time.Second},
			{s: withCycles(burst, 3), at: 2 * time.Second},
			{s: withCycles(burst, 4), at: 3 * time.Second},
			{s: withCycles(burst, 5), at: 4 * time.Second},
		}},
		{"a heap that grows fast is left alone", []look{
			// 2 MiB a second: the next GC within 4s, and no GC yet.
			{s: withAllocs(burst, 100*mib)},
			{s: withAllocs(burst, 102*mib), at: time.Second},
			{s: withAllocs(burst, 104*mib), at: 2 * time.Second},
			{s: withAllocs(burst, 106*mib), at: 3 * time.Second},
			{s: withAllocs(burst, 106*mib+512*kib), at: 4 * time.Second}, // calm since 3s
			{s: withAllocs(burst, 107*mib), at: 5 * time.Second, want: true},
		}},
		{"light traffic does not hold it back", []look{
			{s: withAllocs(burst, 100*mib)},
			{s: withAllocs(burst, 100*mib+25*kib), at: time.Second},
			{s: withAllocs(burst, 100*mib+50*kib), at: 2 * time.Second, want: true},
		}},
		{"connections closed after the last GC, with light traffic", []look{
			{s: withAllocs(conns, 100*mib)},
			{s: withConns(withAllocs(withCycles(conns, 78), 190*mib), 3000), at: time.Second}, // the burst, with GCs
			{s: withConns(withAllocs(withCycles(conns, 78), 190*mib+25*kib), 3000), at: 2 * time.Second},
			{s: withAllocs(withCycles(conns, 78), 195*mib), at: 3 * time.Second}, // they close
			{s: withAllocs(withCycles(conns, 78), 195*mib+25*kib), at: 4 * time.Second},
			{s: withAllocs(withCycles(conns, 78), 195*mib+50*kib), at: 5 * time.Second, want: true},
			{s: withAllocs(half, 195*mib+75*kib), at: 6 * time.Second},
			{s: withAllocs(half, 195*mib+100*kib), at: 30 * time.Second}, // once per busy spell
		}},
		{"a GC after the burst shows what is live", []look{
			{s: withAllocs(conns, 100*mib)},
			{s: withAllocs(withCycles(conns, 78), 190*mib), at: time.Second},
			{s: withAllocs(withCycles(conns, 78), 190*mib+25*kib), at: 2 * time.Second},
			{s: withAllocs(withCycles(conns, 79), 190*mib+50*kib), at: 3 * time.Second}, // a calm GC
			{s: withAllocs(withCycles(conns, 79), 190*mib+75*kib), at: 5 * time.Second},
			{s: withAllocs(withCycles(conns, 79), 190*mib+100*kib), at: 30 * time.Second},
		}},
		{"a burst of connections opening is left alone", []look{
			{s: withAllocs(conns, 100*mib)},
			{s: withConns(withAllocs(withCycles(conns, 78), 150*mib), 5000), at: time.Second}, // a GC amid the burst
			{s: withConns(withAllocs(withCycles(conns, 78), 190*mib), 9744), at: 2 * time.Second},
			{s: withConns(withAllocs(withCycles(conns, 78), 190*mib+25*kib), 9744), at: 3 * time.Second},
			{s: withConns(withAllocs(withCycles(conns, 78), 190*mib+50*kib), 9744), at: 5 * time.Second},
			{s: withConns(withAllocs(withCycles(conns, 78), 190*mib+75*kib), 9744), at: 30 * time.Second},
		}},
		{"a small heap after a burst is kept", []look{
			{s: withAllocs(small, 100*mib)},
			{s: withAllocs(small, 120*mib), at: time.Second},
			{s: withAllocs(small, 120*mib), at: 3 * time.Second},
			{s: withAllocs(small, 120*mib), at: 30 * time.Second},
		}},
		{"again after the gap when it helped", []look{
			{s: burst},
			{s: burst, at: 2 * time.Second, want: true},
			{s: after, at: 3 * time.Second},
			{s: withCycles(burst, 9), at: 4 * time.Second}, // a second burst
			{s: withCycles(burst, 9), at: 8 * time.Second},
			{s: withCycles(burst, 9), at: 12 * time.Second, want: true},
		}},
		{"backs off while it does not help", []look{
			{s: burst},
			{s: burst, at: 2 * time.Second, want: true},
			{s: withCycles(burst, 8), at: 3 * time.Second},  // its GC, and no less spare
			{s: withCycles(burst, 8), at: 12 * time.Second}, // so the gap doubles to 20s
			{s: withCycles(burst, 8), at: 31 * time.Second},
			{s: withCycles(burst, 8), at: 32 * time.Second}, // and to 40s
			{s: withCycles(burst, 8), at: 71 * time.Second},
			{s: withCycles(after, 8), at: 72 * time.Second}, // returned after all
			{s: withCycles(burst, 8), at: 73 * time.Second, want: true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &trimmer{}
			for i, l := range tc.looks {
				now := t0.Add(l.at)
				if got := tr.due(l.s, now); got != l.want {
					t.Fatalf("look %d (%+v at %v): due = %v, want %v", i, l.s, l.at, got, l.want)
				}
				if l.want {
					tr.done(l.s, now)
				}
			}
		})
	}
}

func withAllocs(s memSample, n uint64) memSample {
	s.allocs = n
	return s
}

func withCycles(s memSample, n uint64) memSample {
	s.gcCycles = n
	return s
}

// TestTrimmerRun drives the loop with scripted samples: it forces a GC
// when they say so, once, and stops with its context.
func TestTrimmerRun(t *testing.T) {
	const mib = 1 << 20
	var (
		mu     sync.Mutex
		forced bool
	)
	gcs := make(chan struct{}, 10)
	tr := &trimmer{
		every: time.Millisecond,
		quiet: time.Millisecond,
		read: func() memSample {
			mu.Lock()
			defer mu.Unlock()
			if forced {
				return memSample{free: 0, live: 30 * mib, gcCycles: 2}
			}
			return memSample{free: 64 * mib, live: 30 * mib, gcCycles: 1}
		},
		gc: func() {
			mu.Lock()
			forced = true
			mu.Unlock()
			gcs <- struct{}{}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.run(ctx)
	}()
	select {
	case <-gcs:
	case <-time.After(10 * time.Second):
		t.Fatal("no GC forced with 64 MiB spare")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if n := len(gcs); n != 0 {
		t.Fatalf("%d more GCs forced after the spare was returned", n)
	}
}

func withConns(s memSample, n int64) memSample {
	s.conns = n
	return s
}
