package main

import (
	"io"
	"strings"
	"time"
)

// progressInterval is how often the progress line is redrawn (5 per second).
const progressInterval = 200 * time.Millisecond

// progress redraws one status line on a terminal-like writer with \r, at
// most every progressInterval, until stopped. It is the only writer to w
// while it runs.
type progress struct {
	stop chan struct{}
	done chan struct{}
}

// startProgress draws line() on w now and every progressInterval.
func startProgress(w io.Writer, line func() string) *progress {
	p := &progress{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		width := 0
		draw := func(end string) {
			s := line()
			pad := max(width-len(s), 0)
			width = len(s)
			io.WriteString(w, "\r"+s+strings.Repeat(" ", pad)+end)
		}
		draw("")
		for {
			select {
			case <-t.C:
				draw("")
			case <-p.stop:
				draw("\n")
				return
			}
		}
	}()
	return p
}

// Stop draws the final line, ends it with a newline and returns once the
// drawing goroutine has finished.
func (p *progress) Stop() {
	close(p.stop)
	<-p.done
}
