package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// startCountingWSEcho starts a wss:// echo server that signals on the
// returned channel after each echo it has written (the channel holds up
// to buffer of them; more are dropped).
func startCountingWSEcho(t *testing.T, buffer int) (string, <-chan struct{}) {
	t.Helper()
	echoed := make(chan struct{}, buffer)
	quit, quitNow := context.WithCancel(context.Background())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		defer context.AfterFunc(quit, func() { c.CloseNow() })()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, b); err != nil {
				return
			}
			select {
			case echoed <- struct{}{}:
			default:
			}
		}
	}))
	srv.TLS = &tls.Config{}
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		quitNow()
	})
	return "wss" + strings.TrimPrefix(srv.URL, "https") + "/echo", echoed
}

// TestStay checks that round trips count in the window named on stdin:
// after the WINDOW answer, once the server has echoed more messages than
// there are connections, at least one was sent in the new window.
func TestStay(t *testing.T) {
	const conns = 4
	url, echoed := startCountingWSEcho(t, 1000)
	s := startSession(t, runStay, config{
		mode: "stay", url: url, conns: conns, dialers: 4, rate: 100, size: 64,
		dialTimeout: 5 * time.Second, timeout: testTimeout,
	})
	var ready openReport
	s.expect("READY", &ready)
	if ready.Opened != conns || ready.Failed != 0 {
		t.Fatalf("READY %+v", ready)
	}
	// awaitNew waits for conns+1 echoes written after it was called: the
	// messages sent before the last WINDOW answer and still unanswered
	// are at most one per connection, so one of them was sent after it.
	awaitNew := func() {
		for len(echoed) > 0 {
			<-echoed
		}
		for range conns + 1 {
			<-echoed
		}
	}
	if _, err := io.WriteString(s.stdin, "GO\n"); err != nil {
		t.Fatal(err)
	}
	awaitNew()
	for _, name := range []string{"storm", calmWindow, "storm"} {
		if _, err := io.WriteString(s.stdin, "WINDOW "+name+"\n"); err != nil {
			t.Fatal(err)
		}
		var ack windowMark
		s.expect("WINDOW", &ack)
		if ack.Name != name {
			t.Fatalf("WINDOW %+v, want %q", ack, name)
		}
		awaitNew()
	}
	s.stdin.Close()
	var res stayReport
	s.expect("RESULT", &res)
	s.wait()
	t.Logf("RESULT %+v", res)
	if res.Conns != conns || len(res.Windows) != 2 {
		t.Fatalf("RESULT %+v: want windows calm and storm", res)
	}
	for name, w := range res.Windows {
		if w.Messages == 0 || w.Errors != 0 || w.Dropped != 0 || !(0 < w.P50 && w.P50 <= w.P99 && w.P99 <= w.Max) {
			t.Errorf("window %s: %+v", name, w)
		}
	}
	// The storm window's timeline holds every one of its round trips,
	// the slowest among them; calm, which comes back, has none.
	if tl := res.Windows[calmWindow].Timeline; tl != nil {
		t.Errorf("calm has a timeline: %+v", tl)
	}
	storm := res.Windows["storm"]
	var n int64
	var slowest float64
	for _, sl := range storm.Timeline {
		n += sl.N
		slowest = max(slowest, sl.Max)
	}
	if n != storm.Messages || slowest != storm.Max {
		t.Errorf("storm timeline has %d round trips, slowest %v ms; the window %d, %v ms", n, slowest, storm.Messages, storm.Max)
	}
}

func TestTimeline(t *testing.T) {
	start := time.Now()
	tl := &timeline{start: start}
	tl.record(start.Add(-time.Millisecond), time.Second) // before: none
	tl.record(start, 3*time.Millisecond)
	tl.record(start.Add(100*time.Millisecond), 5*time.Millisecond)
	tl.record(start.Add(600*time.Millisecond), 2*time.Millisecond)
	tl.record(start.Add(timelineSlots*timelineSlot), time.Second) // after: none
	want := []slotSummary{{0, 2, 5}, {0.25, 0, 0}, {0.5, 1, 2}}
	if got := tl.summary(); !slices.Equal(got, want) {
		t.Errorf("summary %+v, want %+v", got, want)
	}
	if got := (&timeline{start: start}).summary(); len(got) != 0 {
		t.Errorf("empty timeline: %+v", got)
	}
}
