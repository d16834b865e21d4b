package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// logScan is what sluice's log says about the run. The log is every sluice
// process's: an upgrade's new process writes to the same file.
type logScan struct {
	Lines          int            `json:"lines"`
	Errors         []string       `json:"unexpected_errors"` // level=ERROR lines other than refused reloads (first 20)
	ErrorCount     int            `json:"unexpected_error_count"`
	RefusedReloads int            `json:"refused_reload_lines"`
	Panics         int            `json:"panic_lines"`
	Warns          int            `json:"warn_lines"`
	Reasons        map[string]int `json:"access_reasons"` // reason= of access lines
	// Moved counts the old processes' msg=moved lines: a connection
	// handed to the new process, which writes its access line at its
	// end. Not an end, so not among Reasons.
	Moved int `json:"moved_lines"`
	// TakenOver sums what the new processes say they took over.
	TakenOver int `json:"taken_over"`
	Started   int `json:"started_lines"`
	Stopped   int `json:"stopped_lines"`

	// movedStarts is when the moved connections started, by listener and
	// client address (a client's port may serve two listeners at once).
	// Not when they moved: the old process writes its line after the new
	// one runs the connection, which may end first.
	movedStarts map[string][]time.Time
}

// scanLog reads sluice's log: any panic, any ERROR but the expected
// "reload failed" lines, how connections ended by reason, and the
// processes' starts, stops and moves.
func scanLog(path string) (logScan, error) {
	f, err := os.Open(path)
	if err != nil {
		return logScan{}, fmt.Errorf("open sluice log: %w", err)
	}
	defer f.Close()
	ls := logScan{Reasons: map[string]int{}, movedStarts: map[string][]time.Time{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		ls.line(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return ls, fmt.Errorf("read sluice log: %w", err)
	}
	return ls, nil
}

func (ls *logScan) line(line string) {
	ls.Lines++
	if strings.Contains(line, "panic") || strings.HasPrefix(line, "goroutine ") {
		ls.Panics++
	}
	switch {
	case strings.Contains(line, "level=ERROR") && strings.Contains(line, "reload failed"):
		ls.RefusedReloads++
	case strings.Contains(line, "level=ERROR"):
		ls.ErrorCount++
		if len(ls.Errors) < 20 {
			ls.Errors = append(ls.Errors, line)
		}
	case strings.Contains(line, "level=WARN"):
		ls.Warns++
	}
	switch logMsg(line) {
	case "access":
		if reason := logAttr(line, "reason"); reason != "" {
			ls.Reasons[reason]++
		}
	case "moved":
		ls.Moved++
		t, err := time.Parse(time.RFC3339Nano, logAttr(line, "time"))
		dur, derr := time.ParseDuration(logAttr(line, "dur"))
		if err == nil && derr == nil {
			key := logAttr(line, "listener") + " " + logAttr(line, "client")
			ls.movedStarts[key] = append(ls.movedStarts[key], t.Add(-dur))
		}
	case "upgrade: connections taken over from the old process":
		n, _ := strconv.Atoi(logAttr(line, "connections"))
		ls.TakenOver += n
	case "sluice started":
		ls.Started++
	case "sluice stopped":
		ls.Stopped++
	}
}

// movedDuring says whether a connection from client to listener that
// started between start and end was moved: the stream's, as a client
// address serves one connection to a listener at a time.
func (ls *logScan) movedDuring(listener, client string, start, end time.Time) int {
	n := 0
	for _, t := range ls.movedStarts[listener+" "+client] {
		// The log's times are cut to the millisecond.
		if !t.Before(start.Add(-time.Millisecond)) && !t.After(end) {
			n++ // once per move: a long stream may move at two upgrades
		}
	}
	return n
}

// logMsg is a text slog line's msg, unquoted.
func logMsg(line string) string {
	_, rest, ok := strings.Cut(line, " msg=")
	if !ok {
		return ""
	}
	if strings.HasPrefix(rest, `"`) {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return ""
		}
		msg, _ := strconv.Unquote(q)
		return msg
	}
	msg, _, _ := strings.Cut(rest, " ")
	return msg
}

// logAttr is the value of a text slog line's unquoted attribute key (a
// number, a duration, an address, a word), or "".
func logAttr(line, key string) string {
	var rest string
	if v, ok := strings.CutPrefix(line, key+"="); ok {
		rest = v
	} else if _, v, ok := strings.Cut(line, " "+key+"="); ok {
		rest = v
	} else {
		return ""
	}
	v, _, _ := strings.Cut(rest, " ")
	return v
}
