package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Checking sluice+metrics' counters against wrk: every scrape is parsed
// with Prometheus' own text parser, and in the scenarios that have a
// checkListener, the listener's counters from just before wrk starts to
// just after its connections have closed are compared with what wrk
// reports having done.

// exposition is one scrape of /metrics, parsed: metric families by name.
type exposition map[string]*dto.MetricFamily

// parseExposition parses a /metrics body as a Prometheus server does, with
// github.com/prometheus/common/expfmt's text parser and the legacy metric
// name rules.
func parseExposition(r io.Reader) (exposition, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	mf, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	if len(mf) == 0 {
		return nil, errors.New("no metrics in it")
	}
	return exposition(mf), nil
}

// sum adds up the series of the family name whose labels include match
// (a counter's or a gauge's value, whichever typ says the family is), and
// their values by the label by (nil when by is empty). found is false when
// no series matched; a family of another type is an error.
func (e exposition) sum(name string, typ dto.MetricType, match map[string]string, by string) (total float64, byLabel map[string]float64, found bool, err error) {
	mf, ok := e[name]
	if !ok {
		return 0, nil, false, nil
	}
	if mf.GetType() != typ {
		return 0, nil, false, fmt.Errorf("%s is a %s, not a %s", name, mf.GetType(), typ)
	}
	if by != "" {
		byLabel = map[string]float64{}
	}
series:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for k, v := range match {
			if labels[k] != v {
				continue series
			}
		}
		var v float64
		if typ == dto.MetricType_COUNTER {
			v = m.GetCounter().GetValue()
		} else {
			v = m.GetGauge().GetValue()
		}
		total += v
		found = true
		if by != "" {
			byLabel[labels[by]] += v
		}
	}
	return total, byLabel, found, nil
}

// listenerCounts are one listener's metrics in one scrape, or how much
// they grew between two.
type listenerCounts struct {
	open              float64 // sluice_listener_connections
	accepted          float64 // sluice_listener_accepted_connections_total
	handshakes        float64 // sluice_tls_handshakes_total, all versions, ciphers, resumed or not
	handshakeFailures float64 // sluice_tls_handshake_failures_total, every reason
	closed            float64 // sluice_connections_closed_total, every route and reason
	closedBy          map[string]float64
	received, sent    float64 // sluice_listener_{received,sent}_bytes_total
}

// countsOf reads a listener's metrics from a scrape. The listener's own
// series (connections open, accepted, bytes) are there from the start and
// must be; closed connections and handshakes appear with the first one.
func countsOf(e exposition, listener string) (listenerCounts, error) {
	var c listenerCounts
	l := map[string]string{"listener": listener}
	var errs []error
	get := func(dst *float64, name string, typ dto.MetricType, required bool) map[string]float64 {
		by := ""
		if name == "sluice_connections_closed_total" {
			by = "reason"
		}
		v, byLabel, found, err := e.sum(name, typ, l, by)
		if err != nil {
			errs = append(errs, err)
		} else if required && !found {
			errs = append(errs, fmt.Errorf("no %s{listener=%q}", name, listener))
		}
		*dst = v
		return byLabel
	}
	get(&c.open, "sluice_listener_connections", dto.MetricType_GAUGE, true)
	get(&c.accepted, "sluice_listener_accepted_connections_total", dto.MetricType_COUNTER, true)
	get(&c.received, "sluice_listener_received_bytes_total", dto.MetricType_COUNTER, true)
	get(&c.sent, "sluice_listener_sent_bytes_total", dto.MetricType_COUNTER, true)
	get(&c.handshakes, "sluice_tls_handshakes_total", dto.MetricType_COUNTER, false)
	get(&c.handshakeFailures, "sluice_tls_handshake_failures_total", dto.MetricType_COUNTER, false)
	c.closedBy = get(&c.closed, "sluice_connections_closed_total", dto.MetricType_COUNTER, false)
	return c, errors.Join(errs...)
}

// minus is how much the counters grew from before to c; open is c's.
func (c listenerCounts) minus(before listenerCounts) listenerCounts {
	d := listenerCounts{
		open:              c.open,
		accepted:          c.accepted - before.accepted,
		handshakes:        c.handshakes - before.handshakes,
		handshakeFailures: c.handshakeFailures - before.handshakeFailures,
		closed:            c.closed - before.closed,
		received:          c.received - before.received,
		sent:              c.sent - before.sent,
		closedBy:          map[string]float64{},
	}
	for r, n := range c.closedBy {
		if n -= before.closedBy[r]; n != 0 {
			d.closedBy[r] = n
		}
	}
	return d
}

// quietSince reports whether no connection is open in either scrape and
// no counter moved between them.
func (c listenerCounts) quietSince(prev listenerCounts) bool {
	return c.open == 0 && prev.open == 0 && c.accepted == prev.accepted && c.closed == prev.closed &&
		c.received == prev.received && c.sent == prev.sent
}

// How the runner waits for a listener to be quiet before and after a run.
const (
	quietPoll   = 100 * time.Millisecond
	quietWithin = 5 * time.Second
)

// quiet scrapes every poll until the listener has no connection open and
// its counters stayed put between two scrapes in a row, and returns the
// last scrape's counts: before a run, the starting point; after it, once
// wrk's connections are closed and counted. Not quiet within the deadline
// is an error (a connections gauge that never gets back to 0 is wrong).
func (s *scraper) quiet(listener string, poll, within time.Duration) (listenerCounts, error) {
	deadline := time.Now().Add(within)
	var prev *listenerCounts
	for {
		e, _, err := s.scrape()
		if err != nil {
			return listenerCounts{}, err
		}
		c, err := countsOf(e, listener)
		if err != nil {
			return listenerCounts{}, fmt.Errorf("GET %s: %w", s.url, err)
		}
		if prev != nil && c.quietSince(*prev) {
			return c, nil
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("listener %q not quiet within %s: sluice_listener_connections %v (should be 0), closed %v, accepted %v",
				listener, within, c.open, c.closed, c.accepted)
		}
		prev = &c
		time.Sleep(poll)
	}
}

// wrkTotals are what wrk reports of one run (bench/wrk/report.lua), and
// the -c it ran with.
type wrkTotals struct {
	conns float64 // -c: connections wrk keeps open
	// probes: before the run wrk connects to each address of the host
	// and closes at once (wrk.resolve, wrk.connect), no TLS: one
	// connection for 127.0.0.1.
	probes   float64
	requests float64 // responses wrk read in full
	bytes    float64 // bytes of responses wrk read (the plaintext, over TLS)
	reqBytes float64 // size of each request; wrk sends the same one every time
	// socket errors: wrk closes the connection and opens another one.
	connectErrors, readErrors, writeErrors float64
}

// socketErrors are the connections wrk may have opened beyond -c.
func (w wrkTotals) socketErrors() float64 { return w.connectErrors + w.readErrors + w.writeErrors }

// Keys of the metrics map that carry wrk's totals from wrkCPU to measure.
const (
	keyWrkConns    = "wrk_conns"
	keyWrkProbes   = "wrk_probes"
	keyWrkRequests = "wrk_requests"
	keyWrkBytes    = "wrk_bytes"
	keyWrkReqBytes = "wrk_req_bytes"
	keyWrkConnErr  = "wrk_connect_errors"
	keyWrkReadErr  = "wrk_read_errors"
	keyWrkWriteErr = "wrk_write_errors"
)

func (w wrkTotals) metrics() metrics {
	return metrics{
		keyWrkConns: w.conns, keyWrkProbes: w.probes, keyWrkRequests: w.requests, keyWrkBytes: w.bytes, keyWrkReqBytes: w.reqBytes,
		keyWrkConnErr: w.connectErrors, keyWrkReadErr: w.readErrors, keyWrkWriteErr: w.writeErrors,
	}
}

func wrkTotalsOf(m metrics) (wrkTotals, bool) {
	w := wrkTotals{
		conns: m[keyWrkConns], probes: m[keyWrkProbes], requests: m[keyWrkRequests], bytes: m[keyWrkBytes], reqBytes: m[keyWrkReqBytes],
		connectErrors: m[keyWrkConnErr], readErrors: m[keyWrkReadErr], writeErrors: m[keyWrkWriteErr],
	}
	_, ok := m[keyWrkConns]
	return w, ok && w.conns > 0 && w.reqBytes > 0 && w.probes >= 0
}

// metricsCheck is one run's comparison of the listener's counters (grown
// from just before wrk started to just after its connections closed) with
// wrk's totals.
type metricsCheck struct {
	d listenerCounts
	w wrkTotals
}

// inFlight is the most requests sluice can have received, and responses
// it can have sent, that wrk never read: wrk -t1 does not pipeline, so one
// per TLS connection, when wrk stopped or a connection broke.
func (c metricsCheck) inFlight() float64 { return c.d.handshakes }

// respBytes is a response's size, as wrk saw it: every response of a
// scenario is the same, and wrk's bytes also count the start of responses
// it did not finish reading, so this is at least the real size.
func (c metricsCheck) respBytes() float64 {
	if c.w.requests == 0 {
		return 0
	}
	return math.Ceil(c.w.bytes / c.w.requests)
}

// compare checks the deltas against wrk. What is exactly knowable:
//
//   - accepted: wrk opens exactly -c connections, plus its probes before
//     the run, and reconnects only after a socket error; so with none,
//     accepted = -c + probes; with some, between that and that plus the
//     socket errors (a connect error before the TCP connection was made
//     opens nothing on sluice's side).
//   - closed = accepted: no connection is open any more at either end.
//   - TLS handshakes: with no socket errors, -c (each of wrk's connections
//     completes one), and the probes, which close before a ClientHello,
//     are failed handshakes: handshakes + failures = accepted. With some,
//     handshakes are between accepted − probes − socket errors and
//     accepted − probes (a failed handshake is a connect error to wrk).
//   - received bytes: every request is reqBytes long and fits one TLS
//     record, so it is reqBytes × n, n from the requests wrk got answers
//     to up to that plus one in flight per TLS connection; with no socket
//     errors n must be whole.
//   - sent bytes: approximate. At least what wrk read, and at most one
//     response more per TLS connection (sluice delivered it, wrk had
//     stopped reading); a response cut short by a closing client counts
//     in part.
func compare(d listenerCounts, w wrkTotals) (metricsCheck, error) {
	c := metricsCheck{d: d, w: w}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	e := w.socketErrors()

	if w.requests <= 0 {
		bad("wrk completed no requests: nothing to check the metrics against")
		return c, errors.Join(errs...)
	}
	opened := w.conns + w.probes
	if e == 0 {
		if d.accepted != opened {
			bad("accepted connections %s, but wrk opened exactly %s (-c %s and %s probes, no socket errors)",
				fmtInt(d.accepted), fmtInt(opened), fmtInt(w.conns), fmtInt(w.probes))
		}
		if d.handshakes != w.conns {
			bad("TLS handshakes %s, but wrk's %s connections each completed one (no socket errors)", fmtInt(d.handshakes), fmtInt(w.conns))
		}
		if d.handshakes+d.handshakeFailures != d.accepted {
			bad("TLS handshakes %s and failures %s, but %s connections accepted, each either", fmtInt(d.handshakes), fmtInt(d.handshakeFailures), fmtInt(d.accepted))
		}
	} else {
		if d.accepted < opened || d.accepted > opened+e {
			bad("accepted connections %s, but wrk opened between %s (-c %s and %s probes) and %s (plus %s socket errors)",
				fmtInt(d.accepted), fmtInt(opened), fmtInt(w.conns), fmtInt(w.probes), fmtInt(opened+e), fmtInt(e))
		}
		if hi := d.accepted - w.probes; d.handshakes > hi || d.handshakes < hi-e {
			bad("TLS handshakes %s, not between %s (accepted less wrk's probes) and that less wrk's %s socket errors",
				fmtInt(d.handshakes), fmtInt(hi), fmtInt(e))
		}
		if d.handshakes+d.handshakeFailures > d.accepted {
			bad("TLS handshakes %s and failures %s, more than the %s connections accepted", fmtInt(d.handshakes), fmtInt(d.handshakeFailures), fmtInt(d.accepted))
		}
	}
	if d.closed != d.accepted {
		bad("closed connections %s, accepted %s, with none open (sluice_listener_connections %v)", fmtInt(d.closed), fmtInt(d.accepted), d.open)
	}
	if d.open != 0 {
		bad("sluice_listener_connections %v after wrk's connections closed", d.open)
	}

	k := c.inFlight()
	lo, hi := w.reqBytes*w.requests, w.reqBytes*(w.requests+k)
	if d.received < lo || d.received > hi {
		bad("received bytes %s, but wrk's %s answered requests of %s bytes, plus at most %s in flight, are %s to %s",
			fmtInt(d.received), fmtInt(w.requests), fmtInt(w.reqBytes), fmtInt(k), fmtInt(lo), fmtInt(hi))
	} else if n := d.received / w.reqBytes; e == 0 && n != math.Trunc(n) {
		bad("received bytes %s are not a whole number of %s-byte requests (%.3f)", fmtInt(d.received), fmtInt(w.reqBytes), n)
	}

	if d.sent < w.bytes {
		bad("sent bytes %s, fewer than the %s wrk read", fmtInt(d.sent), fmtInt(w.bytes))
	} else if most := k * c.respBytes(); d.sent-w.bytes > most {
		bad("sent bytes %s exceed the %s wrk read by %s, more than %s in-flight responses of %s bytes (%s)",
			fmtInt(d.sent), fmtInt(w.bytes), fmtInt(d.sent-w.bytes), fmtInt(k), fmtInt(c.respBytes()), fmtInt(most))
	}
	return c, errors.Join(errs...)
}

// line says what was checked and how it came out, for the progress output
// and the report.
func (c metricsCheck) line() string {
	d, w := c.d, c.w
	var b strings.Builder
	e := w.socketErrors()
	probes := fmt.Sprintf("%s start-up probe", fmtInt(w.probes))
	if w.probes != 1 {
		probes += "s"
	}
	if e == 0 {
		fmt.Fprintf(&b, "accepted %s = wrk's %s connections + its %s (no socket errors)", fmtInt(d.accepted), fmtInt(w.conns), probes)
	} else {
		fmt.Fprintf(&b, "accepted %s, wrk opened %s connections + its %s + up to %s more after socket errors",
			fmtInt(d.accepted), fmtInt(w.conns), probes, fmtInt(e))
	}
	fmt.Fprintf(&b, ", TLS handshakes %s, failed %s", fmtInt(d.handshakes), fmtInt(d.handshakeFailures))
	fmt.Fprintf(&b, ", closed %s", fmtInt(d.closed))
	if len(d.closedBy) > 0 {
		var rs []string
		for _, r := range slices.Sorted(maps.Keys(d.closedBy)) {
			rs = append(rs, fmt.Sprintf("%s %s", r, fmtInt(d.closedBy[r])))
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(rs, ", "))
	}
	k := c.inFlight()
	excess := d.sent - w.bytes
	pct := math.NaN()
	if w.bytes > 0 {
		pct = 100 * excess / w.bytes
	}
	fmt.Fprintf(&b, "; sent bytes %s vs wrk's %s read (%s, %+.3f%%, %.1f responses of %s B; at most %s in flight)",
		fmtInt(d.sent), fmtInt(w.bytes), fmtSigned(excess), pct, excess/max(c.respBytes(), 1), fmtInt(c.respBytes()), fmtInt(k))
	n := d.received / w.reqBytes
	if n == math.Trunc(n) {
		fmt.Fprintf(&b, "; received bytes %s = %s requests × %s B (wrk completed %s, %s in flight, at most %s)",
			fmtInt(d.received), fmtInt(n), fmtInt(w.reqBytes), fmtInt(w.requests), fmtInt(n-w.requests), fmtInt(k))
	} else {
		fmt.Fprintf(&b, "; received bytes %s = %.2f requests × %s B (wrk completed %s, at most %s more in flight)",
			fmtInt(d.received), n, fmtInt(w.reqBytes), fmtInt(w.requests), fmtInt(k))
	}
	return b.String()
}

// The check's numbers travel in the run's metrics, under these keys (the
// closed connections by reason under keyCheckClosedBy + reason), so the
// report can say them.
const (
	keyCheckAccepted   = "check_accepted"
	keyCheckHandshakes = "check_handshakes"
	keyCheckHSFailures = "check_handshake_failures"
	keyCheckClosed     = "check_closed"
	keyCheckClosedBy   = "check_closed_by:"
	keyCheckReceived   = "check_received_bytes"
	keyCheckSent       = "check_sent_bytes"
)

func (c metricsCheck) metrics() metrics {
	m := c.w.metrics()
	m[keyCheckAccepted] = c.d.accepted
	m[keyCheckHandshakes] = c.d.handshakes
	m[keyCheckHSFailures] = c.d.handshakeFailures
	m[keyCheckClosed] = c.d.closed
	m[keyCheckReceived] = c.d.received
	m[keyCheckSent] = c.d.sent
	for r, n := range c.d.closedBy {
		m[keyCheckClosedBy+r] = n
	}
	return m
}

// checkOf restores a run's check from its metrics; false when the run had
// none.
func checkOf(m metrics) (metricsCheck, bool) {
	w, ok := wrkTotalsOf(m)
	if _, checked := m[keyCheckAccepted]; !ok || !checked {
		return metricsCheck{}, false
	}
	d := listenerCounts{
		accepted: m[keyCheckAccepted], handshakes: m[keyCheckHandshakes], handshakeFailures: m[keyCheckHSFailures],
		closed: m[keyCheckClosed], received: m[keyCheckReceived], sent: m[keyCheckSent],
		closedBy: map[string]float64{},
	}
	for k, v := range m {
		if r, ok := strings.CutPrefix(k, keyCheckClosedBy); ok {
			d.closedBy[r] = v
		}
	}
	return metricsCheck{d: d, w: w}, true
}

// checkAgainstWrk is measure's last step for a scenario with a
// checkListener: once wrk's connections are closed and counted, the
// listener's counters since before are compared with wrk's totals in m
// (from wrkCPU), and the check's numbers added to m.
func (r *runner) checkAgainstWrk(s *scraper, listener string, before listenerCounts, m metrics) error {
	after, err := s.quiet(listener, quietPoll, quietWithin)
	if err != nil {
		return fmt.Errorf("after the run: %w", err)
	}
	w, ok := wrkTotalsOf(m)
	if !ok {
		return errors.New("the run has no wrk totals (-c, requests, request size) to check the metrics against")
	}
	c, err := compare(after.minus(before), w)
	fmt.Fprintf(r.progress, "        metrics vs wrk: %s\n", c.line())
	maps.Copy(m, c.metrics())
	if err != nil {
		return fmt.Errorf("the metrics of listener %q disagree with what wrk did: %w\n(%s)", listener, err, c.line())
	}
	return nil
}

// fmtSigned is fmtInt with the sign always written: +1,234 or -1,234.
func fmtSigned(v float64) string {
	s := fmtInt(v)
	if !strings.HasPrefix(s, "-") {
		s = "+" + s
	}
	return s
}

// fmtInt writes a whole number with thousands separators: 123,456,789.
func fmtInt(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprint(v)
	}
	s := strconv.FormatFloat(math.Abs(math.Round(v)), 'f', 0, 64)
	var b strings.Builder
	if v < 0 && math.Round(v) != 0 {
		b.WriteByte('-')
	}
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}
