package main

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestTrimmerDue(t *testing.T) {
	const mib = 1 << 20
	t0 := time.Unix(1000, 0)
	type look struct {
		s    memSample
		at   time.Duration // after t0
		want bool
		// released, if set, records a trim that returned this much.
		released uint64
	}
	burst := memSample{free: 40 * mib, stacks: 30 * mib, inUse: 1 * mib, live: 30 * mib}
	for _, tc := range []struct {
		name  string
		looks []look
	}{
		{"small spare is kept", []look{
			{s: memSample{free: 4 * mib, live: 8 * mib}},
			{s: memSample{free: 4 * mib, live: 8 * mib}, at: time.Second},
		}},
		{"spare small against the live heap is kept", []look{
			{s: memSample{free: 20 * mib, live: 200 * mib}},
			{s: memSample{free: 20 * mib, live: 200 * mib}, at: time.Second},
		}},
		{"stacks in use are not spare", []look{
			{s: memSample{free: 1 * mib, stacks: 80 * mib, inUse: 79 * mib, live: 8 * mib}},
			{s: memSample{free: 1 * mib, stacks: 80 * mib, inUse: 79 * mib, live: 8 * mib}, at: time.Second},
		}},
		{"trims once the burst's spare stops shrinking", []look{
			{s: memSample{free: 90 * mib, live: 30 * mib}, want: true, released: 90 * mib},
			{s: memSample{free: 60 * mib, live: 30 * mib}, at: 11 * time.Second}, // being reused
			{s: memSample{free: 50 * mib, live: 30 * mib}, at: 11 * time.Second}, // still
			{s: memSample{free: 50 * mib, live: 30 * mib}, at: 12 * time.Second, want: true},
		}},
		{"not again within the gap", []look{
			{s: burst, want: true, released: 60 * mib},
			{s: burst, at: 5 * time.Second},
			{s: burst, at: 10 * time.Second, want: true},
		}},
		{"a trim that returned little doubles the gap", []look{
			{s: burst, want: true, released: 1 * mib},
			{s: burst, at: 10 * time.Second},
			{s: burst, at: 19 * time.Second},
			{s: burst, at: 20 * time.Second, want: true, released: 60 * mib},
			{s: burst, at: 30 * time.Second, want: true},
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
					tr.done(l.released, now)
				}
			}
		})
	}
}

// TestTrimmerRun drives the loop with scripted samples: it trims when the
// samples say so, once, and stops with its context.
func TestTrimmerRun(t *testing.T) {
	const mib = 1 << 20
	var (
		mu      sync.Mutex
		trimmed bool
	)
	trims := make(chan struct{}, 10)
	tr := &trimmer{
		every: time.Millisecond,
		read: func() memSample {
			mu.Lock()
			defer mu.Unlock()
			if trimmed {
				return memSample{free: 0, live: 30 * mib}
			}
			return memSample{free: 64 * mib, live: 30 * mib}
		},
		trim: func() {
			mu.Lock()
			trimmed = true
			mu.Unlock()
			trims <- struct{}{}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.run(ctx)
	}()
	select {
	case <-trims:
	case <-time.After(10 * time.Second):
		t.Fatal("no trim with 64 MiB spare")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if n := len(trims); n != 0 {
		t.Fatalf("%d more trims after the spare was returned", n)
	}
}
