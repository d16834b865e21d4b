package main

import (
	"crypto/tls"
	"io"
	"testing"
	"time"
)

func stormConfig(url string) config {
	return config{
		mode: "storm", url: url, conns: 36, dialers: 8,
		dialTimeout: 5 * time.Second, timeout: testTimeout,
	}
}

// runStormSession runs storm mode as the runner does: GO, then for each
// storm its STORM line, a GO to release it and its CALM line; it returns
// READY and RESULT.
func runStormSession(t *testing.T, s *session) (openReport, stormReport) {
	t.Helper()
	var ready openReport
	s.expect("READY", &ready)
	if _, err := io.WriteString(s.stdin, "GO\n"); err != nil {
		t.Fatal(err)
	}
	for _, resume := range []bool{false, true} {
		var start, end stormMark
		s.expect("STORM", &start)
		if _, err := io.WriteString(s.stdin, "GO\n"); err != nil {
			t.Fatal(err)
		}
		s.expect("CALM", &end)
		if start.Resume != resume || end.Resume != resume {
			t.Errorf("STORM %+v, CALM %+v: want resume %v", start, end, resume)
		}
	}
	var res stormReport
	s.expect("RESULT", &res)
	s.wait()
	t.Logf("READY %+v", ready)
	t.Logf("RESULT %+v", res)
	return ready, res
}

// TestStorm checks both storms: every connection reopened, the first with
// full handshakes and the second resuming every one.
func TestStorm(t *testing.T) {
	url, upgrades := startWSEcho(t, nil)
	cfg := stormConfig(url)
	ready, res := runStormSession(t, startSession(t, runStorm, cfg))
	if ready.Opened != cfg.conns || ready.Failed != 0 {
		t.Fatalf("READY %+v", ready)
	}
	if res.Conns != cfg.conns || len(res.Storms) != 2 {
		t.Fatalf("RESULT %+v", res)
	}
	for i, st := range res.Storms {
		if st.Resume != (i == 1) || st.Movers != cfg.conns || st.Reopened != cfg.conns || st.Failed != 0 || len(st.Errors) != 0 {
			t.Errorf("storm %d: %+v", i, st)
		}
		if want := map[bool]int{false: 0, true: cfg.conns}[st.Resume]; st.Resumed != want {
			t.Errorf("storm %d: %d resumed, want %d", i, st.Resumed, want)
		}
		if !(0 < st.P50 && st.P50 <= st.P99 && st.P99 <= st.Max && st.Max <= st.AllBack*1000 && st.AllBack <= st.Seconds) {
			t.Errorf("storm %d: times out of order: %+v", i, st)
		}
	}
	if got, want := upgrades.Load(), int64(3*cfg.conns); got != want {
		t.Errorf("server accepted %d upgrades, want %d (the first dials and each storm's)", got, want)
	}
}

// TestStormNoTickets checks that a server that issues no tickets gives a
// resumed storm with no resumed handshake.
func TestStormNoTickets(t *testing.T) {
	url, _ := startWSEcho(t, &tls.Config{SessionTicketsDisabled: true})
	_, res := runStormSession(t, startSession(t, runStorm, stormConfig(url)))
	if len(res.Storms) != 2 {
		t.Fatalf("RESULT %+v", res)
	}
	for i, st := range res.Storms {
		if st.Reopened != st.Movers || st.Resumed != 0 {
			t.Errorf("storm %d: %+v", i, st)
		}
	}
}

// TestStormFailures checks that reopens that fail are counted, with their
// errors: the server is gone once the connections are open, so every
// reopen is refused.
func TestStormFailures(t *testing.T) {
	url, _, stop := startStoppableWSEcho(t)
	s := startSession(t, runStorm, stormConfig(url))
	var ready openReport
	s.expect("READY", &ready)
	stop()
	s.stdin.Close() // EOF: GO, and every storm goes at once
	for _, tag := range []string{"STORM", "CALM", "STORM", "CALM"} {
		var m stormMark
		s.expect(tag, &m)
	}
	var res stormReport
	s.expect("RESULT", &res)
	s.wait()
	t.Logf("RESULT %+v", res)
	if len(res.Storms) != 2 {
		t.Fatalf("RESULT %+v", res)
	}
	for i, st := range res.Storms {
		if st.Reopened != 0 || st.Failed != st.Movers || len(st.Errors) == 0 || st.AllBack != 0 {
			t.Errorf("storm %d: %+v", i, st)
		}
	}
}
