package splice

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxIdleRunners bounds the runners waiting for a direction to run:
	// enough for the directions that resume together on a busy Parker.
	maxIdleRunners = 32
	// runnerIdle is how long a runner waits for a direction before it
	// ends: an idle process comes back to the goroutines it started with.
	runnerIdle = 5 * time.Second
)

// runners are the goroutines that run the relay directions of a Parker:
// each runs a direction until it parks or ends, then waits for the next.
// A goroutine started afresh for every resume begins with the smallest
// stack and grows it by copying, several times, on its way into the TLS
// record layer and the socket calls; with both directions of a connection
// resuming for every message of sparse traffic, that growth was an eighth
// of the relay's CPU per echo (bench/README.md, "Runners, and
// registrations that last"). A runner keeps the stack it grew. The one
// that waited least runs the next direction, so the others age and end
// after runnerIdle.
type runners struct {
	mu      sync.Mutex
	idle    []*runner // waiting, the one that waited least last
	reap    *time.Timer
	reaping bool // reap is armed
	closed  bool
	idleFor time.Duration // runnerIdle, unless a test sets it first
	wg      sync.WaitGroup
	started atomic.Int64 // runners ever started, for tests
}

// runner is one runner's mailbox: a direction to run, or nil to end.
type runner struct {
	work  chan *half // holds one: a send never waits
	since time.Time  // waiting since
}

func newRunners() *runners {
	w := &runners{idleFor: runnerIdle}
	w.reap = time.AfterFunc(time.Hour, w.reapIdle)
	w.reap.Stop()
	return w
}

// run runs h on the runner that waited least, or on a new one if none
// waits.
func (w *runners) run(h *half) {
	w.mu.Lock()
	r, ok := popLast(&w.idle)
	w.mu.Unlock()
	if ok {
		r.work <- h
		return
	}
	w.wg.Add(1)
	w.started.Add(1)
	go w.runner(&runner{work: make(chan *half, 1)}, h)
}

// runner runs h, then each direction it is handed, until it is told to
// end.
func (w *runners) runner(r *runner, h *half) {
	defer w.wg.Done()
	for h != nil {
		h.copyHalf()
		h = w.wait(r)
	}
}

// wait puts r among the waiting runners and returns the next direction
// it is handed, or nil at once if enough wait already.
func (w *runners) wait(r *runner) *half {
	w.mu.Lock()
	if w.closed || len(w.idle) >= maxIdleRunners {
		w.mu.Unlock()
		return nil
	}
	r.since = time.Now()
	w.idle = append(w.idle, r)
	if !w.reaping {
		w.reaping = true
		w.reap.Reset(w.idleFor)
	}
	w.mu.Unlock()
	return <-r.work
}

// reapIdle ends the runners that have waited idleFor or longer, and
// sets itself for the next to come due.
func (w *runners) reapIdle() {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	n := 0
	for n < len(w.idle) && now.Sub(w.idle[n].since) >= w.idleFor {
		w.idle[n].work <- nil
		n++
	}
	w.idle = slices.Delete(w.idle, 0, n)
	if len(w.idle) == 0 || w.closed {
		w.reaping = false
		return
	}
	w.reap.Reset(w.idleFor - now.Sub(w.idle[0].since))
}

// stop ends the waiting runners, and waits for the others to end; call it
// after the relays have ended. It may be called again.
func (w *runners) stop() {
	w.mu.Lock()
	w.closed = true
	for _, r := range w.idle {
		r.work <- nil
	}
	w.idle = nil
	w.reap.Stop()
	w.mu.Unlock()
	w.wg.Wait()
}

// waiting reports how many runners wait; for tests.
func (w *runners) waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.idle)
}
