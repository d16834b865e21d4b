package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// workload runs the client side: workers that each run streams back to
// back, of random kinds, modes and sizes, until their context ends.
type workload struct {
	targets [numKinds]target
	timeout time.Duration // per stream
	nextID  atomic.Uint64
	active  atomic.Int64

	mu      sync.Mutex
	results []clientResult
}

// pickSize is skewed: mostly 0 to 16 KiB (a few exactly 0), some up to
// 256 KiB, a few up to 4 MiB.
func pickSize(rng *rand.Rand) int64 {
	switch x := rng.IntN(100); {
	case x < 5:
		return 0
	case x < 85:
		return rng.Int64N(16<<10 + 1)
	case x < 97:
		return rng.Int64N(256 << 10)
	}
	return rng.Int64N(4 << 20)
}

func (w *workload) nextHeader(rng *rand.Rand) header {
	return header{
		ID:   w.nextID.Add(1),
		Mode: mode(rng.IntN(int(numModes))),
		Up:   pickSize(rng),
		Down: pickSize(rng),
		Seed: rng.Uint64(),
	}
}

// worker runs streams until stop ends; each stream itself is bounded by
// w.timeout and cut only by abort (the soak being interrupted).
func (w *workload) worker(stop, abort context.Context, rng *rand.Rand, wg *sync.WaitGroup) {
	defer wg.Done()
	for stop.Err() == nil && abort.Err() == nil {
		k := kind(rng.IntN(int(numKinds)))
		w.one(abort, k, w.nextHeader(rng))
	}
}

func (w *workload) one(ctx context.Context, k kind, h header) clientResult {
	w.active.Add(1)
	res := runClient(ctx, w.targets[k], k, h, w.timeout)
	w.active.Add(-1)
	w.mu.Lock()
	w.results = append(w.results, res)
	w.mu.Unlock()
	return res
}

func (w *workload) snapshot() []clientResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]clientResult(nil), w.results...)
}

// verdicts collects the backends' lines.
type verdicts struct {
	mu       sync.Mutex
	byID     map[uint64]verdict
	extra    []verdict // id 0, or a second verdict for one id
	badLines []string
}

func (v *verdicts) add(x verdict) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, dup := v.byID[x.ID]; dup || x.ID == 0 {
		v.extra = append(v.extra, x)
		return
	}
	v.byID[x.ID] = x
}

func (v *verdicts) bad(line string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.badLines = append(v.badLines, line)
}
