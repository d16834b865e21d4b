package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// echoTimeout bounds one message round trip; past it the connection is
// considered lost (coder/websocket closes a connection whose read or write
// context ends).
const echoTimeout = 10 * time.Second

// echoStats accumulates the results of the ws mode, concurrently.
type echoStats struct {
	rtt      histogram
	messages atomic.Int64 // echoes received intact
	errors   atomic.Int64 // failed or mismatched echoes
	dropped  atomic.Int64 // connections lost before we closed them
	tl       *timeline    // by send time, if kept (stay mode's storm windows)
}

// echoPhase runs the echo phase for cfg.duration (cut short if ctx ends):
// each active connection sends a cfg.size byte binary message every
// 1/cfg.rate seconds and waits for its echo, the first sends spread evenly
// over the first period. It draws the progress on stderr and returns the
// phase's length.
func echoPhase(ctx context.Context, cfg config, active []*websocket.Conn, st *echoStats, stderr io.Writer) time.Duration {
	start := time.Now()
	phase, stop := context.WithDeadline(ctx, start.Add(cfg.duration))
	defer stop()
	bar := startProgress(stderr, func() string {
		el := min(time.Since(start), cfg.duration).Truncate(time.Second)
		return fmt.Sprintf("echo %v/%v: %d msgs, p99 %.2fms", el, cfg.duration,
			st.messages.Load(), st.rtt.quantile(0.99).Seconds()*1000)
	})
	var wg sync.WaitGroup
	if len(active) > 0 {
		period := time.Duration(float64(time.Second) / cfg.rate)
		for j, c := range active {
			first := start.Add(time.Duration(int64(period) * int64(j) / int64(len(active))))
			wg.Go(func() { echoLoop(phase, ctx, c, first, period, cfg.size, func() *echoStats { return st }) })
		}
	}
	<-phase.Done()
	wg.Wait()
	bar.Stop()
	return time.Since(start)
}

// echoLoop sends a message on c at first, first+period, ... until phase
// ends (before its deadline, if it has one), skipping the slots missed
// while waiting for an echo. Each round trip is counted in stats(), asked
// as the message is sent (storm mode switches it between storms). Round
// trips are bounded by echoTimeout within run (not phase, so that the last
// ones complete). A failed round trip loses the connection and ends the
// loop.
func echoLoop(phase, run context.Context, c *websocket.Conn, first time.Time, period time.Duration, size int, stats func() *echoStats) {
	c.SetReadLimit(int64(size))
	msg := make([]byte, size)
	timer := time.NewTimer(time.Until(first))
	defer timer.Stop()
	end, bounded := phase.Deadline()
	next := first
	for seq := uint64(0); !bounded || next.Before(end); seq++ {
		select {
		case <-phase.Done():
			return
		case <-timer.C:
		}
		if size >= 8 {
			binary.BigEndian.PutUint64(msg, seq)
		}
		st := stats()
		mctx, cancel := context.WithTimeout(run, echoTimeout)
		t0 := time.Now()
		err := c.Write(mctx, websocket.MessageBinary, msg)
		var typ websocket.MessageType
		var got []byte
		if err == nil {
			typ, got, err = c.Read(mctx)
		}
		rtt := time.Since(t0)
		cancel()
		switch {
		case err != nil:
			st.errors.Add(1)
			if run.Err() == nil {
				st.dropped.Add(1)
			}
			return
		case typ != websocket.MessageBinary || !bytes.Equal(got, msg):
			st.errors.Add(1)
		default:
			st.messages.Add(1)
			st.rtt.record(rtt)
			if st.tl != nil {
				st.tl.record(t0, rtt)
			}
		}

		now := time.Now()
		next = next.Add(period)
		if !next.After(now) {
			next = next.Add((now.Sub(next)/period + 1) * period)
		}
		timer.Reset(next.Sub(now))
	}
}
