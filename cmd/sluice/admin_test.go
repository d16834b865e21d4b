package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// get fetches http://addr+path and returns the status and body.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// scrape parses /metrics with Prometheus's own text parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// sum adds up the series of family name whose labels include want.
func sum(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	var total float64
	for _, m := range f.GetMetric() {
		ok := true
		for k, v := range want {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == k && lp.GetValue() == v)
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}

// waitMetric waits until sum(name, labels) is want.
func waitMetric(t *testing.T, addr, name string, labels map[string]string, want float64) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fams := scrape(t, addr)
		got := sum(fams, name, labels)
		if got == want {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectation is a value a metric family's matching series add up to.
type expectation struct {
	name   string
	labels map[string]string
	want   float64
}

// waitAll waits until every expectation holds in one scrape, and reports
// those that do not at the deadline.
func waitAll(t *testing.T, addr string, exps []expectation) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fams := scrape(t, addr)
		var wrong []string
		for _, e := range exps {
			if got := sum(fams, e.name, e.labels); got != e.want {
				wrong = append(wrong, fmt.Sprintf("%s%v = %v, want %v", e.name, e.labels, got, e.want))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after traffic:\n%s", strings.Join(wrong, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStatus waits until GET path answers code.
func waitStatus(t *testing.T, addr, path string, code int) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, body := 0, ""
		if resp, err := http.Get("http://" + addr + path); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got, body = resp.StatusCode, string(b)
		}
		if got == code {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %d %q, want %d", path, got, body, code)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readmeMetrics returns the metric names the README's Metrics table lists.
func readmeMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n### Metrics\n")
	if !ok {
		t.Fatal("README.md has no ### Metrics section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	var names []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(sec, -1) {
		names = append(names, m[1])
	}
	if len(names) < 20 {
		t.Fatalf("README's Metrics table lists %d metrics; the parse is broken", len(names))
	}
	return names
}

// TestAdminEndpoints: the admin listener's /metrics, parsed as Prometheus
// parses it, counts exactly the traffic sent, bytes of a connection still
// open included; reloads are counted; /readyz turns 503 once a drain
// starts, while the drain waits for a connection; every metric the README
// lists is there.
func TestAdminEndpoints(t *testing.T) {
	backend := startEcho(t)
	addr, adminAddr := freeAddr(t), freeAddr(t)
	keys := filepath.Join(t.TempDir(), "ticket.keys")
	writeFile(t, keys, "# one key\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	doc := `drain_timeout = "1m"
session_ticket_keys = "` + keys + `"
[admin]
address = "` + adminAddr + `"

[[listener]]
name = "wss"
address = "` + addr + `"
[listener.tls]
[[listener.route]]
name = "app"
upstream = "echo"

[[upstream]]
name = "echo"
servers = ["` + backend + `"]
`
	r := startSluiceWith(t, addr, doc)
	waitStatus(t, adminAddr, "/readyz", http.StatusOK)
	if code, body := get(t, adminAddr, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, _ := get(t, adminAddr, "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ without pprof = true: %d, want 404", code)
	}

	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	msg := strings.Repeat("x", 100)
	for range 3 {
		c := dial()
		echo(t, c, msg)
		c.Close()
	}
	wss := map[string]string{"listener": "wss"}
	// A scrape is no snapshot across families: the connections' last
	// counts may land between two families' lines. Wait for all of them.
	waitAll(t, adminAddr, []expectation{
		{"sluice_connections_closed_total", map[string]string{"listener": "wss", "route": "app", "reason": "client_closed"}, 3},
		{"sluice_listener_accepted_connections_total", wss, 3},
		{"sluice_listener_received_bytes_total", wss, 300},
		{"sluice_listener_sent_bytes_total", wss, 300},
		{"sluice_tls_handshakes_total", wss, 3},
		{"sluice_tls_handshake_duration_seconds", wss, 3},
		{"sluice_connection_duration_seconds", wss, 3},
		{"sluice_listener_connections", wss, 0},
		{"sluice_upstream_server_connections_total", map[string]string{"upstream": "echo", "server": backend}, 3},
	})

	// A connection that stays open: its bytes count while it lives.
	long := dial()
	defer long.Close()
	echo(t, long, strings.Repeat("y", 1000))
	// Each direction counts its bytes once its write has returned, which
	// may be just after the client has read them.
	waitAll(t, adminAddr, []expectation{
		{"sluice_listener_received_bytes_total", wss, 1300},
		{"sluice_listener_sent_bytes_total", wss, 1300},
		{"sluice_listener_connections", wss, 1},
	})
	fams := scrape(t, adminAddr)

	// Every metric the README lists is there.
	for _, name := range readmeMetrics(t) {
		if fams[name] == nil {
			t.Errorf("README lists %s; /metrics has no such family", name)
		}
	}

	// Reloads, and their results.
	r.signal(syscall.SIGHUP)
	r.waitLog("configuration reloaded")
	waitMetric(t, adminAddr, "sluice_reloads_total", map[string]string{"result": "success"}, 1)
	writeFile(t, r.file, doc+"\nbogus = 1\n")
	r.signal(syscall.SIGHUP)
	r.waitLog("reload failed")
	waitMetric(t, adminAddr, "sluice_reloads_total", map[string]string{"result": "failure"}, 1)

	// A drain: not ready any more, while the open connection is served on.
	r.signal(syscall.SIGTERM)
	if body := waitStatus(t, adminAddr, "/readyz", http.StatusServiceUnavailable); body != "draining\n" {
		t.Errorf("/readyz while draining: %q", body)
	}
	waitMetric(t, adminAddr, "sluice_draining", nil, 1)
	if code, _ := get(t, adminAddr, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while draining = %d", code)
	}
	echo(t, long, "still here")
	long.Close()
	if err := r.wait(10 * time.Second); err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestAdminListenError: an admin address that cannot be bound stops the
// start, naming the file, line and key, and the listeners bound before it
// are closed again.
func TestAdminListenError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := freeAddr(t)
	file := writeConfig(t, `[admin]
address = "`+busy.Addr().String()+`"
[[listener]]
address = "`+addr+`"
[[listener.route]]
upstream = "u"
[[upstream]]
name = "u"
servers = ["127.0.0.1:9"]
`)
	want := file + ":2: admin.address: listen tcp " + busy.Addr().String() + ": bind: address already in use"
	if err := runFailing(t, file); !strings.Contains(err.Error(), want) {
		t.Errorf("run = %v, want an error containing %q", err, want)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the listener's address is still taken after the failed start: %v", err)
	}
	ln.Close()
}

// TestGrace: after a stop signal, with grace set, /readyz says 503 at
// once while new connections are still accepted and relayed; a second
// stop signal ends the grace period, and the drain closes the listener.
func TestGrace(t *testing.T) {
	backend := startEcho(t)
	addr, adminAddr := freeAddr(t), freeAddr(t)
	r := startSluiceWith(t, addr, `grace = "1h"
drain_timeout = "1m"
[admin]
address = "`+adminAddr+`"
[[listener]]
address = "`+addr+`"
[[listener.route]]
upstream = "echo"
[[upstream]]
name = "echo"
servers = ["`+backend+`"]
`)
	waitStatus(t, adminAddr, "/readyz", http.StatusOK)
	r.signal(syscall.SIGTERM)
	r.waitLog("accepting for the grace period")
	if code, body := get(t, adminAddr, "/readyz"); code != http.StatusServiceUnavailable || body != "draining\n" {
		t.Fatalf("/readyz in the grace period = %d %q", code, body)
	}
	c := r.dial()
	echo(t, c, "accepted in the grace period")
	c.Close()
	r.signal(syscall.SIGTERM)
	r.waitLog("grace period cut short")
	if err := r.wait(10 * time.Second); err != nil {
		t.Fatalf("run: %v", err)
	}
}
