package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// logScan is what sluice's log says about the run.
type logScan struct {
	Lines          int            `json:"lines"`
	Errors         []string       `json:"unexpected_errors"` // level=ERROR lines other than refused reloads (first 20)
	ErrorCount     int            `json:"unexpected_error_count"`
	RefusedReloads int            `json:"refused_reload_lines"`
	Panics         int            `json:"panic_lines"`
	Warns          int            `json:"warn_lines"`
	Reasons        map[string]int `json:"access_reasons"` // reason= of access lines
}

// scanLog reads sluice's log: any panic, any ERROR but the expected
// "reload failed" lines, and how connections ended by reason.
func scanLog(path string) (logScan, error) {
	f, err := os.Open(path)
	if err != nil {
		return logScan{}, fmt.Errorf("open sluice log: %w", err)
	}
	defer f.Close()
	ls := logScan{Reasons: map[string]int{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
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
		if strings.Contains(line, "msg=access") {
			if _, rest, ok := strings.Cut(line, " reason="); ok {
				reason, _, _ := strings.Cut(rest, " ")
				ls.Reasons[reason]++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return ls, fmt.Errorf("read sluice log: %w", err)
	}
	return ls, nil
}
