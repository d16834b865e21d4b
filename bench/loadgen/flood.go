package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// floodReport is the JSON of the RESULT line of flood mode.
type floodReport struct {
	Handshakes int64    `json:"handshakes"` // full handshakes completed
	Refused    int64    `json:"refused"`    // connect refused (ECONNREFUSED)
	Reset      int64    `json:"reset"`      // reset or closed during the handshake
	Timeout    int64    `json:"timeout"`    // -dial-timeout expired
	Other      int64    `json:"other"`      // any other failure
	PerSecond  float64  `json:"handshakes_per_s"`
	P50        float64  `json:"p50_ms"` // connect + handshake of the completed ones
	P99        float64  `json:"p99_ms"`
	Max        float64  `json:"max_ms"`
	Seconds    float64  `json:"seconds"`
	Errors     []string `json:"errors,omitempty"` // up to maxErrors distinct ones
}

// failureKind is how one dial failed, as flood and probe count it.
type failureKind int

const (
	failOther failureKind = iota
	failRefused
	failReset
	failTimeout
)

// classify says how a dial or request failed. A timeout wins over the
// others: a handshake cut by its deadline reports the deadline.
func classify(err error) failureKind {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return failTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return failRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return failReset
	}
	return failOther
}

// errorSample keeps the first maxErrors distinct error strings, told
// apart without their socket addresses ("read tcp A->B: ...").
type errorSample struct {
	mu   sync.Mutex
	errs []string
}

// sockAddrs matches the addresses the net package puts in its errors.
var sockAddrs = regexp.MustCompile(` \S+->\S+:`)

func (s *errorSample) add(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) >= maxErrors {
		return
	}
	msg := sockAddrs.ReplaceAllString(err.Error(), ":")
	for _, e := range s.errs {
		if e == msg {
			return
		}
	}
	s.errs = append(s.errs, msg)
}

func (s *errorSample) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errs
}

// runFlood is flood mode: cfg.conns workers each connect to cfg.addr,
// complete a full TLS 1.3 handshake (the client keeps no session cache, so
// nothing is resumed) and close, again and again for cfg.duration. It
// prints RESULT with the handshakes completed and the failures by kind.
// Dials still in progress when the duration ends are abandoned and not
// counted. stdin is not read. It returns an error only if it cannot write
// to stdout.
func runFlood(ctx context.Context, cfg config, _ io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	host, _, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		return err
	}
	d := newDialer(cfg, host, nil)

	start := time.Now()
	phase, stop := context.WithDeadline(ctx, start.Add(cfg.duration))
	defer stop()
	var done atomic.Int64
	var byKind [failTimeout + 1]atomic.Int64
	var lat histogram
	var errs errorSample
	bar := startProgress(stderr, func() string {
		return fmt.Sprintf("flood %v/%v: %d handshakes, %d failed",
			min(time.Since(start), cfg.duration).Truncate(time.Second), cfg.duration, done.Load(),
			byKind[failOther].Load()+byKind[failRefused].Load()+byKind[failReset].Load()+byKind[failTimeout].Load())
	})
	var wg sync.WaitGroup
	for range cfg.conns {
		wg.Go(func() { floodWorker(phase, d, cfg.addr, &done, &byKind, &lat, &errs) })
	}
	wg.Wait()
	bar.Stop()
	elapsed := time.Since(start)

	ms := func(d time.Duration) float64 { return round3(d.Seconds() * 1000) }
	return writeTagged(stdout, "RESULT", floodReport{
		Handshakes: done.Load(),
		Refused:    byKind[failRefused].Load(),
		Reset:      byKind[failReset].Load(),
		Timeout:    byKind[failTimeout].Load(),
		Other:      byKind[failOther].Load(),
		PerSecond:  round3(float64(done.Load()) / elapsed.Seconds()),
		P50:        ms(lat.quantile(0.50)),
		P99:        ms(lat.quantile(0.99)),
		Max:        ms(lat.maximum()),
		Seconds:    round3(elapsed.Seconds()),
		Errors:     errs.list(),
	})
}

// floodWorker handshakes and closes until phase ends. A failure that
// happens once phase has ended is the phase's doing and is not counted.
func floodWorker(phase context.Context, d *dialer, addr string, done *atomic.Int64,
	byKind *[failTimeout + 1]atomic.Int64, lat *histogram, errs *errorSample) {
	for !ended(phase) {
		t0 := time.Now()
		c, err := d.dialTLS(phase, addr)
		if err != nil {
			if ended(phase) {
				return
			}
			byKind[classify(err)].Add(1)
			errs.add(err)
			continue
		}
		lat.record(time.Since(t0))
		done.Add(1)
		c.Close()
	}
}

// ended says whether ctx is done or past its deadline: the net package
// fails a dial at the deadline itself, possibly before ctx is marked done.
func ended(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(dl)
}
