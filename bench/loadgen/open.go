package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// maxErrors is how many distinct dial error strings READY reports.
const maxErrors = 5

// openReport is the JSON of the READY line.
type openReport struct {
	Opened      int      `json:"opened"`
	Failed      int      `json:"failed"`
	OpenSeconds float64  `json:"open_seconds"`
	Errors      []string `json:"errors,omitempty"`
}

// openAll calls open(dctx, i) for i in [0, cfg.conns) from cfg.dialers
// goroutines, each dctx bounded by cfg.dialTimeout, and reports how many
// succeeded, drawing the progress on stderr. open stores the connection it
// opens at index i; the connection must outlive dctx. Once ctx is done the
// remaining indexes are counted as failed without being dialed.
func openAll(ctx context.Context, cfg config, stderr io.Writer, open func(dctx context.Context, i int) error) openReport {
	n := cfg.conns
	var opened, failed atomic.Int64
	var mu sync.Mutex
	var errs []string
	fail := func(err error) {
		failed.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if len(errs) >= maxErrors {
			return
		}
		s := err.Error()
		for _, e := range errs {
			if e == s {
				return
			}
		}
		errs = append(errs, s)
	}

	start := time.Now()
	bar := startProgress(stderr, func() string {
		return fmt.Sprintf("opening %d/%d conns (%d failed)", opened.Load()+failed.Load(), n, failed.Load())
	})
	parallel(n, cfg.dialers, func(i int) {
		if err := ctx.Err(); err != nil {
			fail(fmt.Errorf("not dialed: %w", err))
			return
		}
		dctx, cancel := context.WithTimeout(ctx, cfg.dialTimeout)
		err := open(dctx, i)
		cancel()
		if err != nil {
			fail(err)
			return
		}
		opened.Add(1)
	})
	bar.Stop()
	return openReport{
		Opened:      int(opened.Load()),
		Failed:      int(failed.Load()),
		OpenSeconds: round3(time.Since(start).Seconds()),
		Errors:      errs,
	}
}

// parallel calls f(i) for i in [0, n) from min(workers, n) goroutines and
// returns when all calls have returned.
func parallel(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}
