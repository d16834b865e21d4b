package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// capturedBefore and capturedAfter are real scrapes of bin/sluice's
// /metrics (b1e54c0, a configuration with [admin] and a TLS listener named
// "tls" in front of sluice demo-backend), trimmed to the sluice_ families
// and a few of the Go and process ones: one right after it started, one
// after three `curl -k https://…/` (three connections, one request each;
// 79-byte requests, 3,772-byte responses). Both are as sluice wrote them,
// HELP lines without text and go_info_ext's spaces after commas included.
const capturedBefore = `# HELP sluice_connection_duration_seconds
# TYPE sluice_connection_duration_seconds histogram
sluice_connection_duration_seconds_bucket{listener="tls",le="0.001"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="0.01"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="0.1"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="1"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="10"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="60"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="300"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="900"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="3600"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="14400"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="43200"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="86400"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="+Inf"} 0
sluice_connection_duration_seconds_sum{listener="tls"} 0
sluice_connection_duration_seconds_count{listener="tls"} 0
# HELP sluice_listener_accepted_connections_total
# TYPE sluice_listener_accepted_connections_total counter
sluice_listener_accepted_connections_total{listener="tls"} 0
# HELP sluice_listener_health_checks_total
# TYPE sluice_listener_health_checks_total counter
sluice_listener_health_checks_total{listener="tls"} 0
# HELP sluice_listener_limit_reached_total
# TYPE sluice_listener_limit_reached_total counter
sluice_listener_limit_reached_total{listener="tls"} 0
# HELP sluice_tls_handshake_duration_seconds
# TYPE sluice_tls_handshake_duration_seconds histogram
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.001"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.0025"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.005"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.01"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.025"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.05"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.1"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.25"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.5"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="1"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="2.5"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="5"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="10"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="+Inf"} 0
sluice_tls_handshake_duration_seconds_sum{listener="tls"} 0
sluice_tls_handshake_duration_seconds_count{listener="tls"} 0
# HELP sluice_tls_handshake_failures_total
# TYPE sluice_tls_handshake_failures_total counter
sluice_tls_handshake_failures_total{listener="tls",reason="client_certificate"} 0
sluice_tls_handshake_failures_total{listener="tls",reason="closed"} 0
sluice_tls_handshake_failures_total{listener="tls",reason="no_application_protocol"} 0
sluice_tls_handshake_failures_total{listener="tls",reason="protocol"} 0
sluice_tls_handshake_failures_total{listener="tls",reason="timeout"} 0
# HELP sluice_upstream_connect_errors_total
# TYPE sluice_upstream_connect_errors_total counter
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="error"} 0
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="out_of_descriptors"} 0
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="refused"} 0
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="reset"} 0
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="timeout"} 0
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="unreachable"} 0
# HELP sluice_upstream_server_connections_total
# TYPE sluice_upstream_server_connections_total counter
sluice_upstream_server_connections_total{upstream="http",server="127.0.0.1:27080"} 0
# HELP sluice_upstream_server_ejections_total
# TYPE sluice_upstream_server_ejections_total counter
sluice_upstream_server_ejections_total{upstream="http",server="127.0.0.1:27080"} 0
# HELP sluice_listener_connections
# TYPE sluice_listener_connections gauge
sluice_listener_connections{listener="tls"} 0
# HELP sluice_listener_max_connections
# TYPE sluice_listener_max_connections gauge
sluice_listener_max_connections{listener="tls"} 0
# HELP sluice_listener_received_bytes_total
# TYPE sluice_listener_received_bytes_total counter
sluice_listener_received_bytes_total{listener="tls"} 0
# HELP sluice_listener_sent_bytes_total
# TYPE sluice_listener_sent_bytes_total counter
sluice_listener_sent_bytes_total{listener="tls"} 0
# HELP sluice_relay_buffers_in_use
# TYPE sluice_relay_buffers_in_use gauge
sluice_relay_buffers_in_use 0
# HELP sluice_relay_parked_directions
# TYPE sluice_relay_parked_directions gauge
sluice_relay_parked_directions 0
# HELP sluice_relay_pipes_in_use
# TYPE sluice_relay_pipes_in_use gauge
sluice_relay_pipes_in_use 0
# HELP sluice_relay_pipes_open
# TYPE sluice_relay_pipes_open gauge
sluice_relay_pipes_open 0
# HELP sluice_tls_certificate_expiry_timestamp_seconds
# TYPE sluice_tls_certificate_expiry_timestamp_seconds gauge
sluice_tls_certificate_expiry_timestamp_seconds{listener="tls",subject="localhost",file="/tmp/mcap/cert.pem"} 1796528103
# HELP sluice_upstream_server_connections
# TYPE sluice_upstream_server_connections gauge
sluice_upstream_server_connections{upstream="http",server="127.0.0.1:27080"} 0
# HELP sluice_upstream_server_up
# TYPE sluice_upstream_server_up gauge
sluice_upstream_server_up{upstream="http",server="127.0.0.1:27080"} 1
# HELP sluice_build_info
# TYPE sluice_build_info gauge
sluice_build_info{version="b1e54c0",goversion="go1.26.8"} 1
# HELP sluice_draining
# TYPE sluice_draining gauge
sluice_draining 0
# HELP sluice_last_reload_success_timestamp_seconds
# TYPE sluice_last_reload_success_timestamp_seconds gauge
sluice_last_reload_success_timestamp_seconds 1796441705
# HELP sluice_memory_trims_total
# TYPE sluice_memory_trims_total counter
sluice_memory_trims_total 0
# HELP sluice_ready
# TYPE sluice_ready gauge
sluice_ready 1
# HELP sluice_reloads_total
# TYPE sluice_reloads_total counter
sluice_reloads_total{result="failure"} 0
sluice_reloads_total{result="success"} 0
# HELP go_gc_duration_seconds
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 0
go_gc_duration_seconds{quantile="0.25"} 0
go_gc_duration_seconds{quantile="0.5"} 0
go_gc_duration_seconds{quantile="0.75"} 0
go_gc_duration_seconds{quantile="1"} 0.000995296
go_gc_duration_seconds_sum 0.000995296
go_gc_duration_seconds_count 1
# HELP go_info_ext
# TYPE go_info_ext gauge
go_info_ext{compiler="gc", GOARCH="amd64", GOOS="linux", GOROOT=""} 1
# HELP process_open_fds
# TYPE process_open_fds gauge
process_open_fds 14
`

const capturedAfter = `# HELP sluice_connection_duration_seconds
# TYPE sluice_connection_duration_seconds histogram
sluice_connection_duration_seconds_bucket{listener="tls",le="0.001"} 0
sluice_connection_duration_seconds_bucket{listener="tls",le="0.01"} 2
sluice_connection_duration_seconds_bucket{listener="tls",le="0.1"} 3
sluice_connection_duration_seconds_bucket{listener="tls",le="1"} 3
sluice_connection_duration_seconds_bucket{listener="tls",le="10"} 3
sluice_connection_duration_seconds_bucket{listener="tls",le="60"} 3
sluice_connection_duration_seconds_bucket{listener="tls",le="300"} 3
sluice_connection_duration_seconds_bucket{listener="tls",le="900"} 3
sluice_connection_duration_seconds_bucket{listener="tls",le="3600"} 3
sluice_connection_duration_seconds_bucket{listener="tls",le="14400"} 3
sluice_connection_duration_seconds_bucket{listener="tls",le="43200"} 3
sluice_connection_duration_seconds_bucket{listener="tls",le="86400"} 3
sluice_connection_duration_seconds_bucket{listener="tls",le="+Inf"} 3
sluice_connection_duration_seconds_sum{listener="tls"} 0.019200242
sluice_connection_duration_seconds_count{listener="tls"} 3
# HELP sluice_connections_closed_total
# TYPE sluice_connections_closed_total counter
sluice_connections_closed_total{listener="tls",route="tls#0",reason="client_closed"} 3
# HELP sluice_listener_accepted_connections_total
# TYPE sluice_listener_accepted_connections_total counter
sluice_listener_accepted_connections_total{listener="tls"} 3
# HELP sluice_listener_health_checks_total
# TYPE sluice_listener_health_checks_total counter
sluice_listener_health_checks_total{listener="tls"} 0
# HELP sluice_listener_limit_reached_total
# TYPE sluice_listener_limit_reached_total counter
sluice_listener_limit_reached_total{listener="tls"} 0
# HELP sluice_tls_handshake_duration_seconds
# TYPE sluice_tls_handshake_duration_seconds histogram
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.001"} 0
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.0025"} 2
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.005"} 3
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.01"} 3
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.025"} 3
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.05"} 3
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.1"} 3
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.25"} 3
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="0.5"} 3
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="1"} 3
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="2.5"} 3
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="5"} 3
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="10"} 3
sluice_tls_handshake_duration_seconds_bucket{listener="tls",le="+Inf"} 3
sluice_tls_handshake_duration_seconds_sum{listener="tls"} 0.007664741000000001
sluice_tls_handshake_duration_seconds_count{listener="tls"} 3
# HELP sluice_tls_handshake_failures_total
# TYPE sluice_tls_handshake_failures_total counter
sluice_tls_handshake_failures_total{listener="tls",reason="client_certificate"} 0
sluice_tls_handshake_failures_total{listener="tls",reason="closed"} 0
sluice_tls_handshake_failures_total{listener="tls",reason="no_application_protocol"} 0
sluice_tls_handshake_failures_total{listener="tls",reason="protocol"} 0
sluice_tls_handshake_failures_total{listener="tls",reason="timeout"} 0
# HELP sluice_tls_handshakes_total
# TYPE sluice_tls_handshakes_total counter
sluice_tls_handshakes_total{listener="tls",version="TLSv1.3",cipher="TLS_AES_128_GCM_SHA256",resumed="false"} 3
# HELP sluice_upstream_connect_errors_total
# TYPE sluice_upstream_connect_errors_total counter
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="error"} 0
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="out_of_descriptors"} 0
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="refused"} 0
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="reset"} 0
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="timeout"} 0
sluice_upstream_connect_errors_total{upstream="http",server="127.0.0.1:27080",reason="unreachable"} 0
# HELP sluice_upstream_server_connections_total
# TYPE sluice_upstream_server_connections_total counter
sluice_upstream_server_connections_total{upstream="http",server="127.0.0.1:27080"} 3
# HELP sluice_upstream_server_ejections_total
# TYPE sluice_upstream_server_ejections_total counter
sluice_upstream_server_ejections_total{upstream="http",server="127.0.0.1:27080"} 0
# HELP sluice_listener_connections
# TYPE sluice_listener_connections gauge
sluice_listener_connections{listener="tls"} 0
# HELP sluice_listener_max_connections
# TYPE sluice_listener_max_connections gauge
sluice_listener_max_connections{listener="tls"} 0
# HELP sluice_listener_received_bytes_total
# TYPE sluice_listener_received_bytes_total counter
sluice_listener_received_bytes_total{listener="tls"} 237
# HELP sluice_listener_sent_bytes_total
# TYPE sluice_listener_sent_bytes_total counter
sluice_listener_sent_bytes_total{listener="tls"} 11316
# HELP sluice_relay_buffers_in_use
# TYPE sluice_relay_buffers_in_use gauge
sluice_relay_buffers_in_use 0
# HELP sluice_relay_parked_directions
# TYPE sluice_relay_parked_directions gauge
sluice_relay_parked_directions 0
# HELP sluice_relay_pipes_in_use
# TYPE sluice_relay_pipes_in_use gauge
sluice_relay_pipes_in_use 0
# HELP sluice_relay_pipes_open
# TYPE sluice_relay_pipes_open gauge
sluice_relay_pipes_open 0
# HELP sluice_tls_certificate_expiry_timestamp_seconds
# TYPE sluice_tls_certificate_expiry_timestamp_seconds gauge
sluice_tls_certificate_expiry_timestamp_seconds{listener="tls",subject="localhost",file="/tmp/mcap/cert.pem"} 1796528103
# HELP sluice_upstream_server_connections
# TYPE sluice_upstream_server_connections gauge
sluice_upstream_server_connections{upstream="http",server="127.0.0.1:27080"} 0
# HELP sluice_upstream_server_up
# TYPE sluice_upstream_server_up gauge
sluice_upstream_server_up{upstream="http",server="127.0.0.1:27080"} 1
# HELP sluice_build_info
# TYPE sluice_build_info gauge
sluice_build_info{version="b1e54c0",goversion="go1.26.8"} 1
# HELP sluice_draining
# TYPE sluice_draining gauge
sluice_draining 0
# HELP sluice_last_reload_success_timestamp_seconds
# TYPE sluice_last_reload_success_timestamp_seconds gauge
sluice_last_reload_success_timestamp_seconds 1796441705
# HELP sluice_memory_trims_total
# TYPE sluice_memory_trims_total counter
sluice_memory_trims_total 0
# HELP sluice_ready
# TYPE sluice_ready gauge
sluice_ready 1
# HELP sluice_reloads_total
# TYPE sluice_reloads_total counter
sluice_reloads_total{result="failure"} 0
sluice_reloads_total{result="success"} 0
# HELP go_gc_duration_seconds
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 0
go_gc_duration_seconds{quantile="0.25"} 0
go_gc_duration_seconds{quantile="0.5"} 0
go_gc_duration_seconds{quantile="0.75"} 0
go_gc_duration_seconds{quantile="1"} 0.000995296
go_gc_duration_seconds_sum 0.000995296
go_gc_duration_seconds_count 1
# HELP go_info_ext
# TYPE go_info_ext gauge
go_info_ext{compiler="gc", GOARCH="amd64", GOOS="linux", GOROOT=""} 1
# HELP process_open_fds
# TYPE process_open_fds gauge
process_open_fds 14
`

func mustParse(t *testing.T, text string) exposition {
	t.Helper()
	e, err := parseExposition(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// The captured scrapes parse, and the check reads from them what the
// three curl connections did.
func TestCapturedExposition(t *testing.T) {
	before, err := countsOf(mustParse(t, capturedBefore), "tls")
	if err != nil {
		t.Fatal(err)
	}
	after, err := countsOf(mustParse(t, capturedAfter), "tls")
	if err != nil {
		t.Fatal(err)
	}
	d := after.minus(before)
	want := listenerCounts{accepted: 3, handshakes: 3, closed: 3, received: 237, sent: 11316}
	if d.open != 0 || d.accepted != want.accepted || d.handshakes != want.handshakes || d.closed != want.closed ||
		d.received != want.received || d.sent != want.sent || d.handshakeFailures != 0 {
		t.Errorf("deltas %+v, want %+v", d, want)
	}
	if len(d.closedBy) != 1 || d.closedBy["client_closed"] != 3 {
		t.Errorf("closed by reason %v, want client_closed 3", d.closedBy)
	}
	// As wrk would report three connections and one request on each.
	c, err := compare(d, wrkTotals{conns: 3, requests: 3, bytes: 11316, reqBytes: 79})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.line(); !strings.Contains(got, "accepted 3 = wrk's 3 connections + its 0 start-up probes") ||
		!strings.Contains(got, "closed 3 (client_closed 3)") || !strings.Contains(got, "received bytes 237 = 3 requests × 79 B") {
		t.Errorf("line: %s", got)
	}
	// Another listener has no series: an error, not zeros.
	if _, err := countsOf(mustParse(t, capturedAfter), "nosuch"); err == nil {
		t.Error("countsOf for a listener that is not there: no error")
	}
}

func TestParseExpositionFails(t *testing.T) {
	for name, text := range map[string]string{
		"not the format":  "<html>hello</html>\n",
		"value missing":   "sluice_listener_connections{listener=\"tls\"}\n",
		"bad label":       "sluice_listener_connections{listener=tls} 1\n",
		"type twice":      "# TYPE x counter\n# TYPE x gauge\nx 1\n",
		"unclosed labels": "# TYPE x counter\nx{a=\"1\" 1\n",
		"empty":           "",
		"comments only":   "# just a comment\n",
	} {
		if _, err := parseExposition(strings.NewReader(text)); err == nil {
			t.Errorf("%s: parsed %q", name, text)
		}
	}
	// A family of the wrong type is the metrics being wrong.
	e := mustParse(t, strings.Replace(capturedAfter, "# TYPE sluice_listener_accepted_connections_total counter",
		"# TYPE sluice_listener_accepted_connections_total gauge", 1))
	if _, err := countsOf(e, "tls"); err == nil || !strings.Contains(err.Error(), "GAUGE, not a COUNTER") {
		t.Errorf("accepted as a gauge: %v", err)
	}
}

func TestCompare(t *testing.T) {
	// S1-like: 64 connections and wrk's probe, 40-byte requests, 250-byte
	// responses, 100,000 answered; 30 more requests reached sluice and
	// were answered by it, not read by wrk, which also read 100 bytes of
	// one of them.
	w := wrkTotals{conns: 64, probes: 1, requests: 100000, bytes: 100000*250 + 100, reqBytes: 40}
	ok := listenerCounts{accepted: 65, handshakes: 64, handshakeFailures: 1, closed: 65, received: 40 * 100030, sent: 250 * 100030,
		closedBy: map[string]float64{"client_reset": 64, "handshake": 1}}
	with := func(f func(*listenerCounts)) listenerCounts {
		d := ok
		f(&d)
		return d
	}
	werr := w
	werr.readErrors = 2
	for _, tc := range []struct {
		name string
		d    listenerCounts
		w    wrkTotals
		bad  string // "" when it must pass
	}{
		{"consistent", ok, w, ""},
		{"no request in flight", with(func(d *listenerCounts) { d.received, d.sent = 40*100000, 100000*250+100 }), w, ""},
		{"every connection with one in flight", with(func(d *listenerCounts) { d.received, d.sent = 40*100064, 250*100064 }), w, ""},
		{"no probe", with(func(d *listenerCounts) { d.accepted, d.closed, d.handshakeFailures = 64, 64, 0 }),
			wrkTotals{conns: 64, requests: 100000, bytes: 100000*250 + 100, reqBytes: 40}, ""},
		{"the probe not counted", with(func(d *listenerCounts) { d.accepted, d.closed, d.handshakeFailures = 64, 64, 0 }), w, "wrk opened exactly 65 (-c 64 and 1 probes"},
		{"one accepted too many", with(func(d *listenerCounts) { d.accepted, d.closed, d.handshakes = 66, 66, 65 }), w, "wrk opened exactly 65"},
		{"a handshake missing", with(func(d *listenerCounts) { d.handshakes = 63 }), w, "TLS handshakes 63, but wrk's 64 connections"},
		{"a handshake failure missing", with(func(d *listenerCounts) { d.handshakeFailures = 0 }), w, "failures 0, but 65 connections accepted"},
		{"a close missing", with(func(d *listenerCounts) { d.closed = 64 }), w, "closed connections 64"},
		{"gauge not back to 0", with(func(d *listenerCounts) { d.open = 1 }), w, "sluice_listener_connections 1"},
		{"received short of the answered requests", with(func(d *listenerCounts) { d.received = 40*100000 - 40 }), w, "received bytes 3,999,960"},
		{"received beyond one per connection", with(func(d *listenerCounts) { d.received = 40 * 100065 }), w, "plus at most 64 in flight"},
		{"received not whole requests", with(func(d *listenerCounts) { d.received = 40*100030 + 7 }), w, "not a whole number"},
		{"sent less than wrk read", with(func(d *listenerCounts) { d.sent = 100000*250 + 99 }), w, "fewer than the 25,000,100 wrk read"},
		{"sent beyond one response per connection", with(func(d *listenerCounts) { d.sent = 100000*250 + 100 + 64*251 + 1 }), w, "more than 64 in-flight responses of 251 bytes"},
		{"wrk answered nothing", ok, wrkTotals{conns: 64, probes: 1, reqBytes: 40}, "no requests"},
		// Two read errors: wrk reconnected twice, so 65 to 67 accepted
		// and handshakes up to two short; received in a range, not
		// necessarily whole requests.
		{"socket errors: reconnects", with(func(d *listenerCounts) {
			d.accepted, d.closed, d.handshakes, d.received = 67, 67, 65, 40*100030+7
		}), werr, ""},
		{"socket errors: too many accepted", with(func(d *listenerCounts) { d.accepted, d.closed, d.handshakes = 68, 68, 67 }), werr, "between 65 (-c 64 and 1 probes) and 67"},
		{"socket errors: handshakes short", with(func(d *listenerCounts) { d.accepted, d.closed, d.handshakes = 67, 67, 63 }), werr, "TLS handshakes 63, not between 66"},
	} {
		_, err := compare(tc.d, tc.w)
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.bad != "" && err == nil:
			t.Errorf("%s: passed, want an error with %q", tc.name, tc.bad)
		case tc.bad != "" && !strings.Contains(err.Error(), tc.bad):
			t.Errorf("%s: %v, want %q in it", tc.name, err, tc.bad)
		}
	}
}

// The check goes into the run's metrics and comes back out for the report.
func TestCheckRoundTrip(t *testing.T) {
	c, err := compare(listenerCounts{accepted: 65, handshakes: 64, handshakeFailures: 1, closed: 65, received: 41 * 20030, sent: 250*20030 + 3,
		closedBy: map[string]float64{"client_closed": 4, "client_reset": 60, "handshake": 1}},
		wrkTotals{conns: 64, probes: 1, requests: 20000, bytes: 250 * 20000, reqBytes: 41})
	if err != nil {
		t.Fatal(err)
	}
	m := c.metrics()
	m["rps"] = 1
	back, ok := checkOf(m)
	if !ok || back.line() != c.line() {
		t.Fatalf("round trip:\n%s\n%s", c.line(), back.line())
	}
	want := "accepted 65 = wrk's 64 connections + its 1 start-up probe (no socket errors), TLS handshakes 64, failed 1, closed 65 (client_closed 4, client_reset 60, handshake 1); " +
		"sent bytes 5,007,503 vs wrk's 5,000,000 read (+7,503, +0.150%, 30.0 responses of 250 B; at most 64 in flight); " +
		"received bytes 821,230 = 20,030 requests × 41 B (wrk completed 20,000, 30 in flight, at most 64)"
	if c.line() != want {
		t.Errorf("line:\n%s\nwant:\n%s", c.line(), want)
	}
	m[keyWrkProbes] = -1 // report.lua said nothing of probes
	if _, ok := checkOf(m); ok {
		t.Error("checkOf a run whose probes are unknown: ok")
	}
	if _, ok := checkOf(metrics{"rps": 1}); ok {
		t.Error("checkOf a run without a check: ok")
	}
}

func TestFmtInt(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 123456789: "123,456,789", -4567: "-4,567", 1e12: "1,000,000,000,000"} {
		if got := fmtInt(v); got != want {
			t.Errorf("fmtInt(%v) = %q, want %q", v, got, want)
		}
	}
	if fmtSigned(5) != "+5" || fmtSigned(-5) != "-5" || fmtSigned(0) != "+0" {
		t.Error("fmtSigned")
	}
}

// quiet waits for the listener's connections to be closed and counted,
// and gives up, with an error, when they are not.
func TestQuiet(t *testing.T) {
	var polls atomic.Int32
	open := atomic.Int32{}
	open.Store(1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := polls.Add(1)
		closed := min(n, 3) // the count moves until the third poll
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprintf(w, "# TYPE sluice_listener_connections gauge\nsluice_listener_connections{listener=\"tls\"} %d\n", open.Load())
		for _, c := range []string{"accepted_connections", "received_bytes", "sent_bytes"} {
			fmt.Fprintf(w, "# TYPE sluice_listener_%s_total counter\nsluice_listener_%s_total{listener=\"tls\"} 3\n", c, c)
		}
		fmt.Fprintf(w, "# TYPE sluice_connections_closed_total counter\nsluice_connections_closed_total{listener=\"tls\",route=\"r\",reason=\"client_closed\"} %d\n", closed)
		if n >= 2 {
			open.Store(0)
		}
	}))
	defer srv.Close()
	s := &scraper{url: srv.URL, every: time.Second, client: srv.Client()}
	c, err := s.quiet("tls", time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c.closed != 3 || c.open != 0 || polls.Load() < 4 {
		t.Errorf("quiet after %d polls: %+v", polls.Load(), c)
	}

	open.Store(5) // stuck: never quiet
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "# TYPE sluice_listener_connections gauge\nsluice_listener_connections{listener=\"tls\"} 5\n"+
			"# TYPE sluice_listener_accepted_connections_total counter\nsluice_listener_accepted_connections_total{listener=\"tls\"} 5\n"+
			"# TYPE sluice_listener_received_bytes_total counter\nsluice_listener_received_bytes_total{listener=\"tls\"} 5\n"+
			"# TYPE sluice_listener_sent_bytes_total counter\nsluice_listener_sent_bytes_total{listener=\"tls\"} 5\n")
	}))
	defer srv2.Close()
	s = &scraper{url: srv2.URL, every: time.Second, client: srv2.Client()}
	if _, err := s.quiet("tls", time.Millisecond, 20*time.Millisecond); err == nil || !strings.Contains(err.Error(), "sluice_listener_connections 5") {
		t.Errorf("never quiet: %v", err)
	}
}
