package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// stormCalm is the pause before each storm: the connections that stay
// (stay mode, another process) echo with no storm, and their round trips
// then ("calm") are what the storms' are compared with.
const stormCalm = time.Second

// stormResult is the JSON of one storm.
type stormResult struct {
	Resume   bool `json:"resume"`   // the clients offered the tickets of the storm before
	Movers   int  `json:"movers"`   // connections closed and reopened
	Reopened int  `json:"reopened"` // upgrades completed
	Failed   int  `json:"failed"`   // reopens that failed (dial, handshake or upgrade)
	Resumed  int  `json:"resumed"`  // of the reopened, TLS handshakes that resumed a session
	// AllBack is from the first close to the last completed upgrade;
	// Seconds to the last reopen finished, failed ones included.
	AllBack float64 `json:"all_back_s"`
	Seconds float64 `json:"seconds"`
	// From each mover's reopen (right after its close) to its completed
	// upgrade, of the reopened.
	P50    float64  `json:"upgrade_p50_ms"`
	P99    float64  `json:"upgrade_p99_ms"`
	Max    float64  `json:"upgrade_max_ms"`
	Errors []string `json:"errors,omitempty"` // up to maxErrors distinct ones
}

// stormMark is the JSON of the STORM and CALM lines.
type stormMark struct {
	Resume bool `json:"resume"`
}

// stormReport is the JSON of the RESULT line of storm mode.
type stormReport struct {
	Conns   int           `json:"conns"` // open after the first dials
	Storms  []stormResult `json:"storms"`
	Seconds float64       `json:"seconds"` // from GO to the end of the last storm
}

// mover is one client that the storms close and reopen.
type mover struct {
	conn  *websocket.Conn        // nil once a reopen failed
	cache tls.ClientSessionCache // the client's own session tickets
}

// runStorm is storm mode (S7): it opens cfg.conns WebSocket connections
// to cfg.url (cfg.dialers at a time), prints READY and waits for a line
// ("GO") or EOF on stdin. Then it closes and reopens them all at once,
// twice: first each client starting with an empty session cache (full
// handshakes; the cache keeps the ticket the server sends), then offering
// the ticket of that first storm (resumed handshakes). Before each storm
// it pauses stormCalm, prints STORM and waits for a line (or EOF), so that
// the orchestrator can start measuring; once every reopen has completed or
// failed it prints CALM. It prints RESULT and closes every connection with
// status 1000. Open connections run CloseRead, as idle ones do in ws mode.
// The connections that stay through the storms and echo are another
// process's (stay mode): sharing this one's scheduler with thousands of
// handshakes would add its queueing to their round trips. It returns an
// error only for an invalid URL or if it cannot write to stdout.
func runStorm(ctx context.Context, cfg config, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	u, err := wsTarget(cfg.url)
	if err != nil {
		return err
	}
	d := newDialer(cfg, u.Hostname(), []string{"http/1.1"})

	open, ready := openWSAll(ctx, cfg, d, stderr)
	movers := make([]*mover, len(open))
	for i, c := range open {
		// Not ctx: CloseRead closes the connection when its context ends.
		c.CloseRead(context.WithoutCancel(ctx))
		movers[i] = &mover{conn: c}
	}
	closeAll := func() {
		conns := make([]*websocket.Conn, len(movers))
		for i, m := range movers {
			conns[i] = m.conn
		}
		closeWSAll(ctx, conns, cfg.dialers)
	}

	if err := writeTagged(stdout, "READY", ready); err != nil {
		closeAll()
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	lines := lineEvents(stdin, stop)
	bar := startProgress(stderr, func() string {
		return fmt.Sprintf("idle: %d conns open, waiting for GO", len(movers))
	})
	select {
	case <-lines:
	case <-ctx.Done():
	}
	bar.Stop()

	start := time.Now()
	var storms []stormResult
	for _, resume := range []bool{false, true} {
		select {
		case <-ctx.Done():
		case <-time.After(stormCalm):
		}
		if ctx.Err() != nil {
			break
		}
		if err := writeTagged(stdout, "STORM", stormMark{Resume: resume}); err != nil {
			closeAll()
			return err
		}
		select {
		case <-lines:
		case <-ctx.Done():
		}
		storms = append(storms, storm(ctx, cfg, d, movers, resume, stderr))
		if err := writeTagged(stdout, "CALM", stormMark{Resume: resume}); err != nil {
			closeAll()
			return err
		}
	}
	elapsed := time.Since(start)

	err = writeTagged(stdout, "RESULT", stormReport{
		Conns:   len(movers),
		Storms:  storms,
		Seconds: round3(elapsed.Seconds()),
	})
	closeAll()
	return err
}

// storm closes every mover's connection and reopens it, all at once: one
// goroutine per mover, all started first and then released together (not
// through cfg.dialers, which would pace them). Without resume each client
// starts from an empty session cache, so its handshake is a full one and
// the cache keeps the ticket the server sends; with resume it offers that
// ticket. A mover whose last reopen failed only dials. Each reopen is
// bounded by cfg.dialTimeout, and all of them by ctx.
func storm(ctx context.Context, cfg config, d *dialer, movers []*mover, resume bool, stderr io.Writer) stormResult {
	var back, failed, resumed atomic.Int64
	var lastBack atomic.Int64 // nanoseconds from the release to the latest completed upgrade
	var upgrade histogram
	var errs errorSample
	release := make(chan struct{})
	var t0 time.Time // set before release is closed
	var wg sync.WaitGroup
	for _, m := range movers {
		if !resume {
			m.cache = tls.NewLRUClientSessionCache(1)
		}
		wg.Go(func() {
			<-release
			if m.conn != nil {
				m.conn.CloseNow()
				m.conn = nil
			}
			reopen := time.Now()
			dctx, cancel := context.WithTimeout(ctx, cfg.dialTimeout)
			c, didResume, err := wsDial(dctx, d, cfg.url, m.cache)
			cancel()
			if err != nil {
				failed.Add(1)
				errs.add(fmt.Errorf("reopen: %w", err))
				return
			}
			done := time.Now()
			upgrade.record(done.Sub(reopen))
			for at, prev := int64(done.Sub(t0)), lastBack.Load(); at > prev && !lastBack.CompareAndSwap(prev, at); prev = lastBack.Load() {
			}
			if didResume {
				resumed.Add(1)
			}
			back.Add(1)
			// Not ctx: CloseRead closes the connection when its context ends.
			c.CloseRead(context.WithoutCancel(ctx))
			m.conn = c
		})
	}
	name := map[bool]string{false: "full", true: "resumed"}[resume]
	bar := startProgress(stderr, func() string {
		return fmt.Sprintf("storm (%s handshakes): %d/%d back, %d failed", name, back.Load(), len(movers), failed.Load())
	})
	t0 = time.Now()
	close(release)
	wg.Wait()
	elapsed := time.Since(t0)
	bar.Stop()

	ms := func(d time.Duration) float64 { return round3(d.Seconds() * 1000) }
	return stormResult{
		Resume:   resume,
		Movers:   len(movers),
		Reopened: int(back.Load()),
		Failed:   int(failed.Load()),
		Resumed:  int(resumed.Load()),
		AllBack:  round3(time.Duration(lastBack.Load()).Seconds()),
		Seconds:  round3(elapsed.Seconds()),
		P50:      ms(upgrade.quantile(0.50)),
		P99:      ms(upgrade.quantile(0.99)),
		Max:      ms(upgrade.maximum()),
		Errors:   errs.list(),
	}
}
