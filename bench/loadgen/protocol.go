package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
)

// writeTagged writes `TAG {json}` and a newline to w in a single Write, so
// that the orchestrator reading a pipe never sees a partial line.
func writeTagged(w io.Writer, tag string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	line := make([]byte, 0, len(tag)+len(b)+2)
	line = append(line, tag...)
	line = append(line, ' ')
	line = append(line, b...)
	line = append(line, '\n')
	if _, err := w.Write(line); err != nil {
		return fmt.Errorf("writing %s: %w", tag, err)
	}
	return nil
}

// awaitEOF returns a channel closed once r reaches EOF (or fails).
func awaitEOF(r io.Reader) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		io.Copy(io.Discard, r)
	}()
	return ch
}

// awaitLine returns a channel closed once r yields a whole line (such as
// "GO\n") or reaches EOF (or fails).
func awaitLine(r io.Reader) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		bufio.NewReader(r).ReadString('\n')
	}()
	return ch
}

// round3 rounds x to 3 decimals for the JSON reports.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// lineEvents reads r one line at a time in a goroutine and delivers each
// line (without its newline) on the returned channel, which is closed at
// EOF or on a read error, so a receive also returns then. For modes that
// take more than one line: one reader for all of them, so a line that
// arrives in the same read as the one before is not lost. The goroutine
// ends at EOF, or once stop is closed and it has finished a read.
func lineEvents(r io.Reader, stop <-chan struct{}) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			select {
			case ch <- strings.TrimRight(line, "\r\n"):
			case <-stop:
				return
			}
		}
	}()
	return ch
}
