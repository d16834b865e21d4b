package admin

import (
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serve runs s on a loopback listener until the test ends.
func serve(t *testing.T, s *Server, network, addr string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Shutdown(t.Context())
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func get(t *testing.T, c *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestEndpoints: /metrics writes what Metrics writes, /healthz is 200,
// /readyz follows Ready, and /debug/pprof/ is there only while pprof is
// on.
func TestEndpoints(t *testing.T) {
	var notReady atomic.Bool
	s := &Server{
		Metrics: func(w io.Writer) { io.WriteString(w, "sluice_up 1\n") },
		Ready: func() error {
			if notReady.Load() {
				return errors.New("draining")
			}
			return nil
		},
	}
	base := "http://" + serve(t, s, "tcp", "127.0.0.1:0")
	c := &http.Client{Timeout: 5 * time.Second}

	code, body, h := get(t, c, base+"/metrics")
	if code != 200 || body != "sluice_up 1\n" || !strings.HasPrefix(h.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("/metrics = %d %q %q", code, body, h.Get("Content-Type"))
	}
	if code, body, _ := get(t, c, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body, _ := get(t, c, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	notReady.Store(true)
	if code, body, _ := get(t, c, base+"/readyz"); code != 503 || body != "draining\n" {
		t.Errorf("/readyz not ready = %d %q", code, body)
	}
	if code, _, _ := get(t, c, base+"/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ with pprof off = %d, want 404", code)
	}
	s.SetPProf(true)
	if code, body, _ := get(t, c, base+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ with pprof on = %d", code)
	}
	s.SetPProf(false)
	if code, _, _ := get(t, c, base+"/debug/pprof/cmdline"); code != 404 {
		t.Errorf("/debug/pprof/cmdline after pprof off = %d, want 404", code)
	}
}

// TestUnixAddress: the admin listener on a unix socket, and a stale
// socket file left behind is replaced.
func TestUnixAddress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // the file stays, nobody listens

	ln, err := Listen(t.Context(), "unix:"+path)
	if err != nil {
		t.Fatalf("Listen over a stale socket file: %v", err)
	}
	defer ln.Close()
	if _, err := Listen(t.Context(), "unix:"+path); err == nil {
		t.Fatal("Listen where a live listener is succeeded")
	}
	for _, tc := range []struct {
		addr string
		ok   bool
	}{{"127.0.0.1:9090", true}, {"[::1]:9090", true}, {"unix:/run/sluice/admin.sock", true},
		{"unix:", false}, {"127.0.0.1", false}, {"localhost:", false}} {
		if err := CheckAddress(tc.addr); (err == nil) != tc.ok {
			t.Errorf("CheckAddress(%q) = %v", tc.addr, err)
		}
	}
}
