package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// The log queue's bounds. Access lines are a few hundred bytes (l4 clips
// what a client controls), so 4096 lines are seconds of a busy proxy's log:
// enough to ride out a log shipper's hiccup without a loss. The byte bound
// caps the memory a stall can hold whatever the lines' size.
//
// At exit the queue gets logFlushTimeout to write out its last lines.
const (
	logQueueLines   = 4096
	logQueueBytes   = 4 << 20
	logFlushTimeout = 2 * time.Second
)

// logQueue is the io.Writer under the process's slog handler. A
// connection logs its access line before it gives back its max_connections
// slot, so a blocked output (stderr piped to a reader that stopped) must
// not block Write: it would wedge the listener. Write queues a copy of the
// line and returns; one goroutine (run) writes the queue out. When the
// queue is full, lines are dropped and counted, and the output's next line
// says how many. slog's handlers call Write once per record, under their
// own lock, so one Write is one line.
type logQueue struct {
	out      io.Writer
	report   func(dropped int64) // writes the dropped-lines line to out
	maxLines int
	maxBytes int

	mu         sync.Mutex
	wake       *sync.Cond // on mu: a line, a drop or Close
	lines      [][]byte   // lines[0] is written next
	size       int        // bytes of lines, and of the line being written
	unreported int64      // dropped since the last report
	closing    bool       // Close was called: write what is queued, then stop
	abandoned  bool       // Close gave up: stop after the write in progress
	stopped    bool       // run has returned or is about to
	done       chan struct{}

	dropped atomic.Int64
}

// newLogQueue starts a queue writing to out; report writes the line that
// counts dropped lines, to out. Close stops it.
func newLogQueue(out io.Writer, maxLines, maxBytes int, report func(dropped int64)) *logQueue {
	q := &logQueue{
		out:      out,
		report:   report,
		maxLines: maxLines,
		maxBytes: maxBytes,
		done:     make(chan struct{}),
	}
	q.wake = sync.NewCond(&q.mu)
	go q.run()
	return q
}

// Write queues a copy of p, or drops it if the queue is full or closed. It
// never blocks on the output and never fails: a logger has nobody to tell.
func (q *logQueue) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped || q.abandoned || len(q.lines) >= q.maxLines || q.size+len(p) > q.maxBytes {
		q.dropped.Add(1)
		q.unreported++
		q.wake.Signal()
		return len(p), nil
	}
	q.lines = append(q.lines, append([]byte(nil), p...))
	q.size += len(p)
	q.wake.Signal()
	return len(p), nil
}

// Dropped returns how many lines were dropped since the start.
func (q *logQueue) Dropped() int64 { return q.dropped.Load() }

// run writes queued lines to the output, first reporting drops, until Close.
func (q *logQueue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		for len(q.lines) == 0 && q.unreported == 0 && !q.closing {
			q.wake.Wait()
		}
		if q.abandoned || (q.closing && len(q.lines) == 0 && q.unreported == 0) {
			q.stopped = true
			q.mu.Unlock()
			return
		}
		dropped := q.unreported
		q.unreported = 0
		var line []byte
		if len(q.lines) > 0 {
			line = q.lines[0]
			q.lines[0] = nil
			q.lines = q.lines[1:]
		}
		q.mu.Unlock()

		if dropped > 0 {
			q.report(dropped)
		}
		if line != nil {
			q.out.Write(line)
			q.mu.Lock()
			q.size -= len(line)
			q.mu.Unlock()
		}
	}
}

// Close writes out what is queued and stops the writer, waiting at most
// timeout. If the output is stalled it gives up, drops the queue and
// returns an error; the writer goroutine then ends when the write it is
// blocked in returns, which at exit does not matter. Lines logged after
// Close are dropped.
func (q *logQueue) Close(timeout time.Duration) error {
	q.mu.Lock()
	q.closing = true
	q.wake.Signal()
	q.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-q.done:
		return nil
	case <-t.C:
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return nil // it finished as the timer fired
	}
	n := len(q.lines)
	q.abandoned = true
	q.lines = nil
	q.dropped.Add(int64(n))
	return fmt.Errorf("log output stalled: %d lines not written", n)
}
