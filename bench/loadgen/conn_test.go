package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// startConnTarget starts an HTTPS server (HTTP/1.1) with TLS settings tc
// (nil: Go's defaults, session tickets on) whose handler is h, and returns
// its address.
func startConnTarget(t *testing.T, tc *tls.Config, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = tc
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

func connConfig(addr string, resume bool) config {
	return config{
		mode: "conn", addr: addr, path: "/", conns: 4, dialers: 1, resume: resume,
		dialTimeout: 5 * time.Second, timeout: testTimeout, duration: 300 * time.Millisecond,
	}
}

func hello(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" || r.ProtoMajor != 1 || !r.Close {
		http.Error(w, "want HTTP/1.1 / with Connection: close", http.StatusBadRequest)
		return
	}
	io.WriteString(w, "hello\n")
}

// TestConnResume checks that conn mode resumes sessions when asked to and
// the server issues tickets, and counts none resumed otherwise: a server
// without tickets, or a client without a cache.
func TestConnResume(t *testing.T) {
	tests := []struct {
		name        string
		tickets     bool
		resume      bool
		wantResumed bool
	}{
		{"resume", true, true, true},
		{"server without tickets", false, true, false},
		{"client without cache", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startConnTarget(t, &tls.Config{SessionTicketsDisabled: !tt.tickets}, hello)
			cfg := connConfig(addr, tt.resume)
			s := startSession(t, runConn, cfg)
			var res connReport
			s.expect("RESULT", &res)
			s.wait()
			t.Logf("RESULT %+v", res)
			if res.Requests == 0 || res.Failed != 0 || len(res.Errors) != 0 || res.Handshakes < res.Requests {
				t.Fatalf("RESULT %+v", res)
			}
			if !(res.PerSecond > 0 && 0 < res.P50 && res.P50 <= res.P99 && res.P99 <= res.Max) {
				t.Errorf("rates or latencies wrong: %+v", res)
			}
			if !tt.wantResumed {
				if res.Resumed != 0 {
					t.Errorf("%d handshakes resumed, want none", res.Resumed)
				}
				return
			}
			// Each worker's first handshake is a full one; every later one
			// offers the ticket its predecessor read.
			if full := res.Handshakes - res.Resumed; full > int64(cfg.conns) || res.Resumed == 0 {
				t.Errorf("%d of %d handshakes resumed, want all but at most %d", res.Resumed, res.Handshakes, cfg.conns)
			}
		})
	}
}

// TestConnFailures checks that an answer other than 200 and a refused
// connection are failures, with their errors.
func TestConnFailures(t *testing.T) {
	for name, addr := range map[string]string{
		"status 500": startConnTarget(t, nil, func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "no", http.StatusInternalServerError)
		}),
		"refused": closedAddr(t),
	} {
		t.Run(name, func(t *testing.T) {
			s := startSession(t, runConn, connConfig(addr, true))
			var res connReport
			s.expect("RESULT", &res)
			s.wait()
			t.Logf("RESULT %+v", res)
			if res.Requests != 0 || res.Failed == 0 || len(res.Errors) == 0 {
				t.Errorf("RESULT %+v", res)
			}
		})
	}
}
