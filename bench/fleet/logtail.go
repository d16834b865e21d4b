package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// logFollower reads the JSON lines appended to an instance's log since it
// was made: every process of the instance writes there, an upgrade's new
// process included.
type logFollower struct {
	path string
	off  int64
}

func followLog(path string) (*logFollower, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("follow log: %w", err)
	}
	return &logFollower{path: path, off: st.Size()}, nil
}

// logLine is a line of sluice's JSON log, with the attributes the fleet
// reads.
type logLine struct {
	Msg     string `json:"msg"`
	Level   string `json:"level"`
	NewPID  int    `json:"new_pid"`
	Moved   int    `json:"moved"`
	Staying int    `json:"staying"`
	Error   string `json:"error"`
	raw     string
}

// errNotLogged is a line that did not come in time.
var errNotLogged = errors.New("not logged in time")

// until reads new lines as they come, until done says a line ends the
// wait or deadline passes.
func (l *logFollower) until(deadline time.Time, done func(logLine) (bool, error)) error {
	for {
		lines, err := l.read()
		if err != nil {
			return err
		}
		for _, line := range lines {
			if ok, err := done(line); ok || err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return errNotLogged
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// read returns the whole lines written since the last read.
func (l *logFollower) read() ([]logLine, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, l.off, 1<<40))
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		return nil, nil
	}
	l.off += int64(end + 1)
	var lines []logLine
	for raw := range bytes.Lines(b[:end+1]) {
		// A Go panic's trace is not JSON; a key of another type in a line
		// the fleet does not read is no matter.
		var line logLine
		if err := json.Unmarshal(raw, &line); err == nil || errors.As(err, new(*json.UnmarshalTypeError)) {
			line.raw = string(bytes.TrimSpace(raw))
			lines = append(lines, line)
		}
	}
	return lines, nil
}
