package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// wsReport is the JSON of the RESULT line of ws mode.
type wsReport struct {
	Conns    int     `json:"conns"`         // connections open after the dials
	Active   int     `json:"active"`        // connections that echoed
	Messages int64   `json:"messages"`      // echoes received intact
	Errors   int64   `json:"errors"`        // failed or mismatched echoes
	Dropped  int64   `json:"dropped_conns"` // connections lost after opening
	P50      float64 `json:"p50_ms"`
	P90      float64 `json:"p90_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	Seconds  float64 `json:"seconds"` // length of the echo phase
}

// runWS is ws mode (S5): it opens cfg.conns WebSocket connections to
// cfg.url over HTTP/1.1, prints READY, waits for a line ("GO") or EOF on
// stdin, then lets round(cfg.active*cfg.conns) of them echo messages for
// cfg.duration (see echoPhase) while the others stay idle, prints RESULT
// and closes every connection with status 1000. Idle connections run
// CloseRead so that control frames are answered and their loss is noticed.
// It returns an error only for an invalid URL or if it cannot write to
// stdout.
func runWS(ctx context.Context, cfg config, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	u, err := wsTarget(cfg.url)
	if err != nil {
		return err
	}
	d := newDialer(cfg, u.Hostname(), []string{"http/1.1"})
	tr := wsTransport(d, func(ctx context.Context, addr string) (net.Conn, error) {
		return d.dialTLS(ctx, addr)
	})
	defer tr.CloseIdleConnections()
	opts := &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: tr},
		CompressionMode: websocket.CompressionDisabled,
	}

	conns := make([]*websocket.Conn, cfg.conns)
	ready := openAll(ctx, cfg, stderr, func(ctx context.Context, i int) error {
		c, _, err := websocket.Dial(ctx, cfg.url, opts)
		if err != nil {
			return err
		}
		conns[i] = c
		return nil
	})
	open := slices.DeleteFunc(conns, func(c *websocket.Conn) bool { return c == nil })
	nActive := min(int(math.Round(cfg.active*float64(cfg.conns))), len(open))
	active, idle := open[:nActive], open[nActive:]

	var st echoStats
	var closing atomic.Bool // set once we start closing the connections ourselves
	for _, c := range idle {
		// Not ctx: CloseRead closes the connection when its context ends.
		closed := c.CloseRead(context.WithoutCancel(ctx))
		context.AfterFunc(closed, func() {
			if !closing.Load() {
				st.dropped.Add(1)
			}
		})
	}
	closeAll := func() {
		closing.Store(true)
		parallel(len(open), cfg.dialers, func(i int) {
			if ctx.Err() != nil {
				open[i].CloseNow()
				return
			}
			open[i].Close(websocket.StatusNormalClosure, "")
		})
	}

	if err := writeTagged(stdout, "READY", ready); err != nil {
		closeAll()
		return err
	}
	bar := startProgress(stderr, func() string {
		return fmt.Sprintf("idle: %d conns open (%d dropped), waiting for GO", len(open), st.dropped.Load())
	})
	select {
	case <-awaitLine(stdin):
	case <-ctx.Done():
	}
	bar.Stop()

	elapsed := echoPhase(ctx, cfg, active, &st, stderr)
	closing.Store(true)
	ms := func(d time.Duration) float64 { return round3(d.Seconds() * 1000) }
	err = writeTagged(stdout, "RESULT", wsReport{
		Conns:    len(open),
		Active:   len(active),
		Messages: st.messages.Load(),
		Errors:   st.errors.Load(),
		Dropped:  st.dropped.Load(),
		P50:      ms(st.rtt.quantile(0.50)),
		P90:      ms(st.rtt.quantile(0.90)),
		P99:      ms(st.rtt.quantile(0.99)),
		Max:      ms(st.rtt.maximum()),
		Seconds:  round3(elapsed.Seconds()),
	})
	closeAll()
	return err
}
