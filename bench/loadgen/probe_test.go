package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startProbeTarget starts an HTTPS server (HTTP/1.1) whose handler is h,
// and returns its address and a count of the connections it accepted.
func startProbeTarget(t *testing.T, h http.HandlerFunc) (string, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://"), &conns
}

func probeConfig(addr string) config {
	return config{
		mode: "probe", addr: addr, path: "/", conns: 1, dialers: 1,
		dialTimeout: 2 * time.Second, timeout: testTimeout,
		duration: 300 * time.Millisecond, interval: 10 * time.Millisecond,
	}
}

func TestProbe(t *testing.T) {
	addr, conns := startProbeTarget(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" || r.ProtoMajor != 1 {
			http.Error(w, "want HTTP/1.1 /", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "hello\n")
	})
	s := startSession(t, runProbe, probeConfig(addr))
	var res probeReport
	s.expect("RESULT", &res)
	s.wait()
	t.Logf("RESULT %+v", res)
	for name, l := range map[string]probeLatency{"new": res.New, "established": res.Established} {
		if l.OK == 0 || l.Failed != 0 || !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
			t.Errorf("%s: %+v", name, l)
		}
		// 300 ms every 10 ms: at most 31 probes (one at the start).
		if l.OK > 31 {
			t.Errorf("%s: %d probes, want at most 31", name, l.OK)
		}
	}
	if res.Reconnects != 0 || len(res.Errors) != 0 {
		t.Errorf("RESULT %+v", res)
	}
	// One connection per new probe, and one kept for all the others.
	if got, want := conns.Load(), res.New.OK+1; got != want {
		t.Errorf("server accepted %d connections, want %d", got, want)
	}
}

func TestProbeFailures(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		s := startSession(t, runProbe, probeConfig(closedAddr(t)))
		var res probeReport
		s.expect("RESULT", &res)
		s.wait()
		if res.New.OK != 0 || res.New.Failed == 0 || res.New.Refused != res.New.Failed ||
			res.Established.OK != 0 || res.Established.Refused == 0 || len(res.Errors) == 0 {
			t.Errorf("RESULT %+v", res)
		}
	})
	t.Run("status", func(t *testing.T) {
		addr, _ := startProbeTarget(t, func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		})
		s := startSession(t, runProbe, probeConfig(addr))
		var res probeReport
		s.expect("RESULT", &res)
		s.wait()
		if res.New.OK != 0 || res.New.Failed == 0 || res.Established.OK != 0 ||
			res.Established.Failed == 0 || res.Reconnects != res.Established.Failed ||
			len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "503") {
			t.Errorf("RESULT %+v", res)
		}
	})
	t.Run("server closes", func(t *testing.T) {
		addr, _ := startProbeTarget(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye\n")
		})
		s := startSession(t, runProbe, probeConfig(addr))
		var res probeReport
		s.expect("RESULT", &res)
		s.wait()
		// Not failures: the established probe reopens its connection.
		if res.New.Failed != 0 || res.Established.Failed != 0 || res.Established.OK == 0 ||
			res.Reconnects != res.Established.OK {
			t.Errorf("RESULT %+v", res)
		}
	})
}
