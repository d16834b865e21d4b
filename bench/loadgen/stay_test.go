package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
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
}
