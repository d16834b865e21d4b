package splice

import (
	"sync"
	"sync/atomic"
)

// maxIdleRunners bounds the runners kept waiting for a direction to run:
// enough for the directions that resume together on a busy Parker, few
// enough that their stacks (which the GC shrinks while they wait) cost
// nothing next to the connections.
const maxIdleRunners = 32

// runners are the goroutines that run the relay directions of a Parker:
// each runs a direction until it parks or ends, then waits for the next.
// A goroutine started afresh for every resume begins with the smallest
// stack and grows it by copying, several times, on its way into the TLS
// record layer and the socket calls; with both directions of a connection
// resuming for every message of sparse traffic, that growth was a seventh
// of the relay's CPU per echo (bench/README.md, "Runners"). A runner keeps
// the stack it grew.
type runners struct {
	work    chan *half // unbuffered: a send succeeds only to a waiting runner
	quit    chan struct{}
	idle    atomic.Int32
	started atomic.Int64 // runners ever started, for tests
	wg      sync.WaitGroup
	once    sync.Once // stop
}

func newRunners() *runners {
	return &runners{work: make(chan *half), quit: make(chan struct{})}
}

// run runs h on a waiting runner, or on a new one if none waits.
func (w *runners) run(h *half) {
	select {
	case w.work <- h:
		return
	default:
	}
	w.wg.Add(1)
	w.started.Add(1)
	go w.runner(h)
}

// runner runs h, then each direction it is handed, until there are
// enough waiting runners or the Parker closes.
func (w *runners) runner(h *half) {
	defer w.wg.Done()
	for {
		h.copyHalf()
		if w.idle.Add(1) > maxIdleRunners {
			w.idle.Add(-1)
			return
		}
		select {
		case h = <-w.work:
			w.idle.Add(-1)
		case <-w.quit:
			return
		}
	}
}

// stop ends the waiting runners, and waits for the others to end; call it
// after the relays have ended. It may be called again.
func (w *runners) stop() {
	w.once.Do(func() { close(w.quit) })
	w.wg.Wait()
}
