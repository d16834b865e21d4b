package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// probeLatency is the JSON of one kind of probe in the RESULT line.
type probeLatency struct {
	OK      int64   `json:"ok"`
	Failed  int64   `json:"failed"`
	Refused int64   `json:"refused"` // the failures by kind
	Reset   int64   `json:"reset"`
	Timeout int64   `json:"timeout"`
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

// probeReport is the JSON of the RESULT line of probe mode.
type probeReport struct {
	New         probeLatency `json:"new"`         // connect + handshake + request + response
	Established probeLatency `json:"established"` // request + response on a kept connection
	Reconnects  int64        `json:"reconnects"`  // kept connections reopened (failed or closed by the server)
	Seconds     float64      `json:"seconds"`
	Errors      []string     `json:"errors,omitempty"` // up to maxErrors distinct ones
}

// probeStats accumulates one kind of probe, concurrently.
type probeStats struct {
	rtt    histogram
	failed [failTimeout + 1]atomic.Int64
}

func (st *probeStats) report() probeLatency {
	ms := func(d time.Duration) float64 { return round3(d.Seconds() * 1000) }
	var failed int64
	for i := range st.failed {
		failed += st.failed[i].Load()
	}
	return probeLatency{
		OK:      int64(st.rtt.count()),
		Failed:  failed,
		Refused: st.failed[failRefused].Load(),
		Reset:   st.failed[failReset].Load(),
		Timeout: st.failed[failTimeout].Load(),
		P50:     ms(st.rtt.quantile(0.50)),
		P90:     ms(st.rtt.quantile(0.90)),
		P99:     ms(st.rtt.quantile(0.99)),
		Max:     ms(st.rtt.maximum()),
	}
}

// prober is the well-behaved client of probe mode.
type prober struct {
	d       *dialer
	addr    string
	req     []byte        // the HTTP/1.1 request, keep-alive
	timeout time.Duration // bound of one probe
	errs    errorSample
}

// runProbe is probe mode: one well-behaved client that, every cfg.interval
// for cfg.duration, times (a) a new connection to cfg.addr: connect, full
// TLS 1.3 handshake, one HTTP/1.1 GET of cfg.path and its whole response;
// and (b) one GET and response on a connection it keeps open, reopened
// (without timing the reopening) when it fails. The two run side by side,
// so a slow handshake does not delay the established client. Slots missed
// while a probe is still running are skipped. Each probe is bounded by
// -dial-timeout. It prints RESULT; stdin is not read. It returns an error
// only if it cannot write to stdout.
func runProbe(ctx context.Context, cfg config, _ io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	host, _, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		return err
	}
	d := newDialer(cfg, host, []string{"http/1.1"})
	p := &prober{
		d:       d,
		addr:    cfg.addr,
		req:     fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: loadgen-probe\r\n\r\n", cfg.path, d.tls.ServerName),
		timeout: cfg.dialTimeout,
	}

	start := time.Now()
	phase, stop := context.WithDeadline(ctx, start.Add(cfg.duration))
	defer stop()
	var fresh, kept probeStats
	var reconnects atomic.Int64
	bar := startProgress(stderr, func() string {
		return fmt.Sprintf("probe %v/%v: new p99 %.2fms, established p99 %.2fms",
			min(time.Since(start), cfg.duration).Truncate(time.Second), cfg.duration,
			fresh.rtt.quantile(0.99).Seconds()*1000, kept.rtt.quantile(0.99).Seconds()*1000)
	})
	var wg sync.WaitGroup
	wg.Go(func() { p.newLoop(phase, ctx, cfg.interval, &fresh) })
	wg.Go(func() { p.keptLoop(phase, ctx, cfg.interval, &kept, &reconnects) })
	wg.Wait()
	bar.Stop()

	return writeTagged(stdout, "RESULT", probeReport{
		New:         fresh.report(),
		Established: kept.report(),
		Reconnects:  reconnects.Load(),
		Seconds:     round3(time.Since(start).Seconds()),
		Errors:      p.errs.list(),
	})
}

// newLoop times a new connection every period until phase ends; each
// probe is bounded within run, so the last one completes.
func (p *prober) newLoop(phase, run context.Context, period time.Duration, st *probeStats) {
	tick(phase, period, func() {
		ctx, cancel := context.WithTimeout(run, p.timeout)
		defer cancel()
		t0 := time.Now()
		err := p.fetchNew(ctx)
		p.record(st, time.Since(t0), err)
	})
}

// fetchNew opens a connection, sends one request and reads the response.
func (p *prober) fetchNew(ctx context.Context) error {
	c, err := p.d.dialTLS(ctx, p.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = p.fetch(ctx, c, bufio.NewReader(c))
	return err
}

// keptLoop times a request on a kept connection every period until phase
// ends.
func (p *prober) keptLoop(phase, run context.Context, period time.Duration, st *probeStats, reconnects *atomic.Int64) {
	var c net.Conn
	var br *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	tick(phase, period, func() {
		ctx, cancel := context.WithTimeout(run, p.timeout)
		defer cancel()
		if c == nil {
			tc, err := p.d.dialTLS(ctx, p.addr)
			if err != nil {
				p.record(st, 0, err)
				return
			}
			c, br = tc, bufio.NewReader(tc)
		}
		t0 := time.Now()
		keep, err := p.fetch(ctx, c, br)
		p.record(st, time.Since(t0), err)
		if err != nil || !keep {
			c.Close()
			c = nil
			reconnects.Add(1)
		}
	})
}

// fetch sends the request on c and reads the whole response from br,
// within ctx's deadline, and says whether the server keeps c open. Only
// 200 OK counts as success.
func (p *prober) fetch(ctx context.Context, c net.Conn, br *bufio.Reader) (keep bool, err error) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
		defer c.SetDeadline(time.Time{})
	}
	if _, err := c.Write(p.req); err != nil {
		return false, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %s", resp.Status)
	}
	return !resp.Close, nil
}

// record counts one probe: its latency if err is nil, else its failure.
func (p *prober) record(st *probeStats, d time.Duration, err error) {
	if err == nil {
		st.rtt.record(d)
		return
	}
	st.failed[classify(err)].Add(1)
	p.errs.add(err)
}

// tick calls f now and then every period until phase ends, skipping the
// slots missed while f runs.
func tick(phase context.Context, period time.Duration, f func()) {
	t := time.NewTicker(period) // a Ticker drops the ticks a slow f misses
	defer t.Stop()
	for !ended(phase) {
		f()
		select {
		case <-phase.Done():
			return
		case <-t.C:
		}
	}
}
