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

// connReport is the JSON of the RESULT line of conn mode.
type connReport struct {
	Requests   int64    `json:"requests"`   // 200 responses read to EOF
	Handshakes int64    `json:"handshakes"` // TLS handshakes completed
	Resumed    int64    `json:"resumed"`    // of those, resumed sessions (ConnectionState().DidResume)
	Failed     int64    `json:"failed"`     // connections that failed: dial, handshake, request, response
	PerSecond  float64  `json:"requests_per_s"`
	P50        float64  `json:"p50_ms"` // connect to EOF, of the completed requests
	P99        float64  `json:"p99_ms"`
	Max        float64  `json:"max_ms"`
	Seconds    float64  `json:"seconds"`
	Errors     []string `json:"errors,omitempty"` // up to maxErrors distinct ones
}

// connStats accumulates conn mode's counts, concurrently.
type connStats struct {
	requests, handshakes, resumed, failed atomic.Int64
	lat                                   histogram
	errs                                  errorSample
}

// runConn is conn mode (S3r): cfg.conns workers each open a connection to
// cfg.addr, send one GET cfg.path with "Connection: close", read the
// response to EOF and close, again and again for cfg.duration. With
// cfg.resume the workers share a session cache (newDialer): TLS 1.3
// tickets arrive after the handshake and are stored as the response is
// read, so the first connections are full handshakes and the rest resume.
// A request cut short by the end of the duration is abandoned, not
// counted. It prints RESULT; stdin is not read. It returns an error only
// if it cannot write to stdout.
func runConn(ctx context.Context, cfg config, _ io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	host, _, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		return err
	}
	d := newDialer(cfg, host, []string{"http/1.1"})
	req := fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: loadgen-conn\r\nConnection: close\r\n\r\n", cfg.path, d.tls.ServerName)

	start := time.Now()
	phase, stop := context.WithDeadline(ctx, start.Add(cfg.duration))
	defer stop()
	var st connStats
	bar := startProgress(stderr, func() string {
		return fmt.Sprintf("conn %v/%v: %d requests, %d of %d handshakes resumed, %d failed",
			min(time.Since(start), cfg.duration).Truncate(time.Second), cfg.duration,
			st.requests.Load(), st.resumed.Load(), st.handshakes.Load(), st.failed.Load())
	})
	var wg sync.WaitGroup
	for range cfg.conns {
		wg.Go(func() { connWorker(phase, d, cfg.addr, req, &st) })
	}
	wg.Wait()
	bar.Stop()
	elapsed := time.Since(start)

	ms := func(d time.Duration) float64 { return round3(d.Seconds() * 1000) }
	return writeTagged(stdout, "RESULT", connReport{
		Requests:   st.requests.Load(),
		Handshakes: st.handshakes.Load(),
		Resumed:    st.resumed.Load(),
		Failed:     st.failed.Load(),
		PerSecond:  round3(float64(st.requests.Load()) / elapsed.Seconds()),
		P50:        ms(st.lat.quantile(0.50)),
		P99:        ms(st.lat.quantile(0.99)),
		Max:        ms(st.lat.maximum()),
		Seconds:    round3(elapsed.Seconds()),
		Errors:     st.errs.list(),
	})
}

// connWorker makes one request per connection until phase ends. A failure
// once phase has ended is the phase's doing and is not counted.
func connWorker(phase context.Context, d *dialer, addr string, req []byte, st *connStats) {
	for !ended(phase) {
		t0 := time.Now()
		err := requestOnce(phase, d, addr, req, st)
		if err != nil {
			if ended(phase) {
				return
			}
			st.failed.Add(1)
			st.errs.add(err)
			continue
		}
		st.lat.record(time.Since(t0))
		st.requests.Add(1)
	}
}

// requestOnce opens a connection, sends req and reads the response and
// then the stream to EOF (the server closes: "Connection: close"), all
// within the dial timeout. Only 200 OK counts as success.
func requestOnce(phase context.Context, d *dialer, addr string, req []byte, st *connStats) error {
	ctx, cancel := context.WithTimeout(phase, d.timeout)
	defer cancel()
	c, err := d.dialTLS(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	st.handshakes.Add(1)
	if c.ConnectionState().DidResume {
		st.resumed.Add(1)
	}
	// The deadline ends the reads at phase's end or the timeout; the
	// context also stops them if the run is cancelled.
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stopClose := context.AfterFunc(ctx, func() { c.Close() })
	defer stopClose()
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("read to EOF: %w", err)
	}
	return nil
}
