package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
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

	// moves are the msg=moved lines, by listener and client address (a
	// client's port may serve two listeners at once).
	moves map[string][]movedLine
}

// movedLine is one msg=moved line: which connection, and when it started
// (the line's time less its dur). Not when it moved: the old process
// writes its line after the new one runs the connection, which may end
// first.
type movedLine struct {
	Conn     string    `json:"conn"`
	Listener string    `json:"listener"`
	Client   string    `json:"client"`
	Start    time.Time `json:"start"`         // zero: the line's time or dur did not parse
	Why      string    `json:"why,omitempty"` // why no stream accounts for it
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
	ls := logScan{Reasons: map[string]int{}, moves: map[string][]movedLine{}}
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
		m := movedLine{Conn: logAttr(line, "conn"), Listener: logAttr(line, "listener"), Client: logAttr(line, "client")}
		t, err := time.Parse(time.RFC3339Nano, logAttr(line, "time"))
		dur, derr := time.ParseDuration(logAttr(line, "dur"))
		if err == nil && derr == nil {
			m.Start = t.Add(-dur)
		}
		key := m.Listener + " " + m.Client
		ls.moves[key] = append(ls.moves[key], m)
	case "upgrade: connections taken over from the old process":
		n, _ := strconv.Atoi(logAttr(line, "connections"))
		ls.TakenOver += n
	case "sluice started":
		ls.Started++
	case "sluice stopped":
		ls.Stopped++
	}
}

// timeMicros is how the soak's problems print a time.
const timeMicros = "15:04:05.000000"

// streamMoves assigns each moved line to the stream whose connection it
// was, and returns how many moves each stream made (a long stream may move
// at two upgrades) and the lines no stream accounts for.
//
// A line's start is never more than a millisecond early (its time is cut
// to the millisecond) but may be late by however long sluice took between
// measuring dur and stamping the line, which a loaded machine can make
// longer than a short stream's life. So a line belongs to the last stream
// from that client address to that listener that had started by then, a
// client address serving one connection to a listener at a time. One a
// second past that stream's end belongs to none.
func (ls *logScan) streamMoves(results []clientResult) (moves map[uint64]int, unmatched []movedLine) {
	byKey := map[string][]*clientResult{}
	for i := range results {
		if c := &results[i]; c.Local != "" {
			key := c.Kind.listener() + " " + c.Local
			byKey[key] = append(byKey[key], c)
		}
	}
	for _, cs := range byKey {
		slices.SortFunc(cs, func(a, b *clientResult) int { return a.Start.Compare(b.Start) })
	}
	moves = map[uint64]int{}
	for key, lines := range ls.moves {
		cs := byKey[key]
		for _, m := range lines {
			// The first stream that started after the line's start
			// (allowing its millisecond); the one before it is the line's.
			i, _ := slices.BinarySearchFunc(cs, m.Start.Add(time.Millisecond), func(c *clientResult, t time.Time) int {
				if c.Start.After(t) {
					return 1
				}
				return -1
			})
			switch {
			case m.Start.IsZero():
				m.Why = "its time or dur did not parse"
			case len(cs) == 0:
				m.Why = "no stream from that address to that listener"
			case i == 0:
				m.Why = fmt.Sprintf("no stream from that address had started by then; the first, %d, started at %s",
					cs[0].ID, cs[0].Start.Format(timeMicros))
			case m.Start.After(cs[i-1].End.Add(time.Second)):
				m.Why = fmt.Sprintf("the last stream from that address to start before it, %d, ran %s to %s",
					cs[i-1].ID, cs[i-1].Start.Format(timeMicros), cs[i-1].End.Format(timeMicros))
			}
			if m.Why != "" {
				unmatched = append(unmatched, m)
				continue
			}
			moves[cs[i-1].ID]++
		}
	}
	return moves, unmatched
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
