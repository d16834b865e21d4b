package l4

import (
	"context"
	"io"
	"net"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestRateLogBudget: burst events per interval pass; the rest are counted
// and the count rides on the first event let through after them.
func TestRateLogBudget(t *testing.T) {
	flushed := make(chan int64, 1)
	r := newRateLog(time.Hour, 3, func(n int64) { flushed <- n })
	t0 := time.Now()
	for i := range 3 {
		if ok, n := r.allow(t0); !ok || n != 0 {
			t.Fatalf("event %d: allow = %v, %d; want true, 0", i, ok, n)
		}
	}
	for i := range 5 {
		if ok, _ := r.allow(t0.Add(time.Minute)); ok {
			t.Fatalf("event %d beyond the burst was let through", i+3)
		}
	}
	if ok, n := r.allow(t0.Add(time.Hour)); !ok || n != 5 {
		t.Fatalf("first event of the next interval: allow = %v, %d; want true, 5", ok, n)
	}
	// The count went out on that line: stop has nothing left to report.
	r.stop()
	select {
	case n := <-flushed:
		t.Fatalf("flush(%d) after the count was reported", n)
	default:
	}
}

// TestRateLogFlushWhenQuiet: a count is reported by the timer when the
// interval ends and no event follows.
func TestRateLogFlushWhenQuiet(t *testing.T) {
	flushed := make(chan int64, 2)
	r := newRateLog(20*time.Millisecond, 1, func(n int64) { flushed <- n })
	defer r.stop()
	now := time.Now()
	r.allow(now)
	r.allow(now)
	r.allow(now)
	select {
	case n := <-flushed:
		if n != 2 {
			t.Fatalf("flush(%d), want flush(2)", n)
		}
	case <-time.After(testTimeout):
		t.Fatal("the suppressed count was never reported")
	}
	// The next event starts afresh.
	if ok, n := r.allow(time.Now().Add(time.Second)); !ok || n != 0 {
		t.Fatalf("allow after the flush = %v, %d; want true, 0", ok, n)
	}
}

// TestRateLogStop: stop reports the pending count at once, and afterwards
// every event passes and nothing is armed.
func TestRateLogStop(t *testing.T) {
	flushed := make(chan int64, 2)
	r := newRateLog(time.Hour, 1, func(n int64) { flushed <- n })
	now := time.Now()
	r.allow(now)
	r.allow(now)
	r.stop()
	select {
	case n := <-flushed:
		if n != 1 {
			t.Fatalf("flush(%d) at stop, want flush(1)", n)
		}
	default:
		t.Fatal("stop did not report the pending count")
	}
	for range 3 {
		if ok, _ := r.allow(now); !ok {
			t.Fatal("an event was suppressed after stop")
		}
	}
	if r.timer != nil {
		t.Fatal("a timer is armed after stop")
	}
}

var timesAttr = regexp.MustCompile(`\btimes=(\d+)`)

// TestMaxConnectionsWarningOncePerSecond saturates a listener with
// MaxConns = 2 and 20 queued clients served one after another: every
// accept finds the limit reached, but the log says so once a second, with
// the number of times.
func TestMaxConnectionsWarningOncePerSecond(t *testing.T) {
	w := newWorld(t)
	be := w.backend(echo)
	s := &Server{
		Name:     "sat",
		MaxConns: 2,
		Logger:   w.logger,
		Routes:   []Route{{Name: "default", Upstream: &Upstream{Name: "echo", Servers: []*Backend{NewBackend(be.addr())}}}},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	shutdown := func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve = %v, want ErrServerClosed", err)
		}
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			shutdown()
		}
	})

	const queued = 20
	start := time.Now()
	var clients []net.Conn
	for range 2 + queued {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		if _, err := c.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	// The accept queue is FIFO: closing the oldest served client frees the
	// slot the next one is waiting for, and Serve finds the limit reached
	// again right after accepting it.
	for i, c := range clients {
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatalf("client %d: echo: %v", i, err)
		}
		if i >= 1 {
			clients[i-1].Close()
		}
	}
	elapsed := time.Since(start)
	before := timesAttr.FindAllStringSubmatch(w.logs.String(), -1)
	clients[len(clients)-1].Close()
	shutdown()
	stopped = true

	// A flush timer fires at most once per second after a line; so in
	// elapsed, at most one line plus two per whole second.
	if max := 1 + 2*int(elapsed/time.Second); len(before) > max {
		t.Errorf("%d max_connections warnings in %v, want at most %d", len(before), elapsed, max)
	}
	var total int
	for _, m := range timesAttr.FindAllStringSubmatch(w.logs.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		total += n
	}
	// Serve meets the full semaphore once before each queued client is
	// accepted and once after the last; it may miss one if a slot was
	// already free when it looked, which takes a whole echo round trip
	// before it loops.
	if total < queued/2 || total > queued+1 {
		t.Errorf("the warnings count %d times the limit was hit, want about %d", total, queued+1)
	}
	w.waitLog("level=WARN", "max_connections reached", "max_connections=2", "times=")
}
