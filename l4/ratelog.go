package l4

import (
	"context"
	"sync"
	"time"
)

// rateLog lets at most burst log lines of one kind through per interval and
// counts the events beyond that, so that a flood of one event (a scanner's
// handshakes, a saturated listener) costs a few lines a second rather than
// one per event, while the log still says how many there were.
//
// A count is never lost: it rides on the next line let through, or, if
// the flood stops, flush reports it when the interval ends. The timer for
// that is armed only while a count is pending, so a quiet rateLog holds
// no timer; stop reports what is pending and arms no more.
type rateLog struct {
	interval time.Duration
	burst    int
	flush    func(suppressed int64) // called without mu held

	mu         sync.Mutex
	start      time.Time   // of the current interval
	n          int         // lines let through in the current interval
	suppressed int64       // events counted since the last line let through
	timer      *time.Timer // armed while suppressed > 0
	stopped    bool
}

func newRateLog(interval time.Duration, burst int, flush func(suppressed int64)) *rateLog {
	return &rateLog{interval: interval, burst: burst, flush: flush}
}

// allow records an event at now and reports whether its line may be
// written; if so, suppressed is the number of events left out since the
// last line, for the caller to put on this one.
func (r *rateLog) allow(now time.Time) (ok bool, suppressed int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return true, r.take()
	}
	if now.Sub(r.start) >= r.interval {
		r.start, r.n = now, 0
	}
	if r.n < r.burst {
		r.n++
		return true, r.take()
	}
	r.suppressed++
	if r.timer == nil {
		r.timer = time.AfterFunc(r.start.Add(r.interval).Sub(now), r.fire)
	}
	return false, 0
}

// take returns the pending count and clears it. A timer still armed finds
// nothing when it fires; stopping it here could race with fire anyway.
func (r *rateLog) take() int64 {
	n := r.suppressed
	r.suppressed = 0
	return n
}

// fire is the timer's: the interval ended with a count pending.
func (r *rateLog) fire() {
	r.mu.Lock()
	r.timer = nil
	n := r.take()
	r.mu.Unlock()
	if n > 0 {
		r.flush(n)
	}
}

// stop reports any pending count now and lets every later event through,
// so that nothing fires after the owner has shut down.
func (r *rateLog) stop() {
	r.mu.Lock()
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	n := r.take()
	r.mu.Unlock()
	if n > 0 {
		r.flush(n)
	}
}

// reasonLogs holds a listener's rateLogs, one per reason (a short, fixed
// list), made on first use. They stop when the server's context ends, at
// the end of Shutdown, after the last connection has logged. The zero
// value is ready.
type reasonLogs struct {
	mu       sync.Mutex
	byReason map[string]*rateLog
	stopped  bool
}

// get returns reason's rateLog, made by mk the first time.
func (f *reasonLogs) get(s *Server, reason string, mk func() *rateLog) *rateLog {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.byReason[reason]
	if r == nil {
		if f.byReason == nil {
			f.byReason = make(map[string]*rateLog)
			context.AfterFunc(s.ctx, f.stop)
		}
		r = mk()
		if f.stopped {
			r.stop()
		}
		f.byReason[reason] = r
	}
	return r
}

// stop stops every rateLog, reporting what they hold.
func (f *reasonLogs) stop() {
	f.mu.Lock()
	f.stopped = true
	rs := make([]*rateLog, 0, len(f.byReason))
	for _, r := range f.byReason {
		rs = append(rs, r)
	}
	f.mu.Unlock()
	for _, r := range rs {
		r.stop()
	}
}
