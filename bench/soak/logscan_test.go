package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestScanLog(t *testing.T) {
	lines := []string{
		`time=2026-01-01T00:00:00.000Z level=INFO msg="sluice started" version=dev pid=10`,
		`time=2026-01-01T00:00:01.000Z level=INFO msg=access conn=a client=127.0.0.1:5000 listener=plain bytes_in=1 bytes_out=2 dur=1ms reason=client_closed client_end=eof backend_end=eof`,
		`time=2026-01-01T00:00:02.000Z level=INFO msg="upgrade: the new process is ready; this one stops accepting" new_pid=11`,
		`time=2026-01-01T00:00:02.500Z level=INFO msg=moved conn=b client=127.0.0.1:5001 listener=plain bytes_in=1 bytes_out=2 dur=1s reason=handed_over`,
		`time=2026-01-01T00:00:02.600Z level=INFO msg="upgrade: connections moved to the new process" moved=1 staying=0 took=1ms`,
		`time=2026-01-01T00:00:02.700Z level=INFO msg="upgrade: connections taken over from the old process" connections=1 took=2ms`,
		`time=2026-01-01T00:00:02.800Z level=INFO msg="sluice stopped"`,
		// The moved connection ends in the new process: its one end.
		`time=2026-01-01T00:00:03.000Z level=INFO msg=access conn=b client=127.0.0.1:5001 listener=plain bytes_in=5 bytes_out=6 dur=2s reason=backend_closed client_end=eof backend_end=eof`,
		`time=2026-01-01T00:00:04.000Z level=ERROR msg="reload failed; the running configuration is unchanged" error=x`,
		`time=2026-01-01T00:00:05.000Z level=WARN msg=access conn=c client=127.0.0.1:5002 listener=passthrough reason=backend_reset`,
	}
	path := filepath.Join(t.TempDir(), "sluice.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ls, err := scanLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if ls.Lines != len(lines) || ls.Moved != 1 || ls.TakenOver != 1 || ls.Started != 1 || ls.Stopped != 1 ||
		ls.RefusedReloads != 1 || ls.ErrorCount != 0 || ls.Warns != 1 {
		t.Errorf("scan = %+v", ls)
	}
	want := map[string]int{"client_closed": 1, "backend_closed": 1, "backend_reset": 1}
	if len(ls.Reasons) != len(want) {
		t.Errorf("reasons = %v, want %v (a moved line is not an end)", ls.Reasons, want)
	}
	for r, n := range want {
		if ls.Reasons[r] != n {
			t.Errorf("reasons = %v, want %v (a moved line is not an end)", ls.Reasons, want)
		}
	}
	at := func(s string) time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(mustDuration(t, s)) }
	// The moved line: at 2.5s, the connection 1s old, so it started at 1.5s.
	type stream struct {
		id         uint64
		kind       kind
		client     string
		start, end string
	}
	cases := []struct {
		name    string
		streams []stream
		mover   uint64 // the stream the line belongs to; 0 for none
	}{
		{"moved while it ran", []stream{{1, kindPlain, "127.0.0.1:5001", "1.4s", "3s"}}, 1},
		{"ended in the new process before the old one wrote its line",
			[]stream{{1, kindPlain, "127.0.0.1:5001", "1.4s", "2.4s"}}, 1},
		{"started within the line's millisecond", []stream{{1, kindPlain, "127.0.0.1:5001", "1.5004s", "3s"}}, 1},
		{"the line stamped after the stream's end (sluice slow to log)",
			[]stream{{1, kindPlain, "127.0.0.1:5001", "1.4s", "1.45s"}}, 1},
		{"the connections before and after on the same port", []stream{
			{1, kindPlain, "127.0.0.1:5001", "0.5s", "1.4s"},
			{2, kindPlain, "127.0.0.1:5001", "1.41s", "2.4s"},
			{3, kindPlain, "127.0.0.1:5001", "2.6s", "3s"},
		}, 2},
		{"only a later stream on that port", []stream{{1, kindPlain, "127.0.0.1:5001", "1.6s", "3s"}}, 0},
		{"only a stream that ended long before", []stream{{1, kindPlain, "127.0.0.1:5001", "0.1s", "0.2s"}}, 0},
		{"same port, another listener", []stream{{1, kindPassthrough, "127.0.0.1:5001", "1.4s", "3s"}}, 0},
		{"another port", []stream{{1, kindPlain, "127.0.0.1:5000", "0s", "3s"}}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var results []clientResult
			for _, s := range c.streams {
				results = append(results, clientResult{ID: s.id, Kind: s.kind, Local: s.client, Start: at(s.start), End: at(s.end)})
			}
			moves, unmatched := ls.streamMoves(results)
			if c.mover == 0 {
				if len(moves) != 0 || len(unmatched) != 1 || unmatched[0].Conn != "b" || unmatched[0].Why == "" {
					t.Errorf("moves %v, unmatched %+v; want none, and line b unmatched with a reason", moves, unmatched)
				}
				return
			}
			if len(moves) != 1 || moves[c.mover] != 1 || len(unmatched) != 0 {
				t.Errorf("moves %v, unmatched %+v; want one move of stream %d", moves, unmatched, c.mover)
			}
		})
	}
}

// TestStreamMovesTwice: a stream moved at two upgrades is two moves of
// one stream; a line whose time does not parse is no stream's.
func TestStreamMovesTwice(t *testing.T) {
	var ls logScan
	ls.moves = map[string][]movedLine{}
	for _, line := range []string{
		`time=2026-01-01T00:00:02.000Z level=INFO msg=moved conn=a client=127.0.0.1:5001 listener=plain dur=1s reason=handed_over`,
		`time=2026-01-01T00:00:04.000Z level=INFO msg=moved conn=a client=127.0.0.1:5001 listener=plain dur=3s reason=handed_over`,
		`time=garbled level=INFO msg=moved conn=c client=127.0.0.1:5001 listener=plain dur=3s reason=handed_over`,
	} {
		ls.line(line)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	results := []clientResult{{ID: 7, Kind: kindPlain, Local: "127.0.0.1:5001", Start: start.Add(900 * time.Millisecond), End: start.Add(5 * time.Second)}}
	moves, unmatched := ls.streamMoves(results)
	if ls.Moved != 3 || moves[7] != 2 || len(unmatched) != 1 || unmatched[0].Conn != "c" {
		t.Errorf("moved lines %d, moves %v, unmatched %+v; want 3 lines, 2 moves of stream 7, line c unmatched", ls.Moved, moves, unmatched)
	}
}

func TestLogMsgAndAttr(t *testing.T) {
	line := `time=2026-01-01T00:00:02.000Z level=INFO msg="upgrade: the new process is ready; this one stops accepting" new_pid=11`
	if got := logMsg(line); got != msgUpgradeReady {
		t.Errorf("logMsg = %q", got)
	}
	if got := logAttr(line, "new_pid"); got != "11" {
		t.Errorf("new_pid = %q", got)
	}
	if got := logAttr(line, "time"); got != "2026-01-01T00:00:02.000Z" {
		t.Errorf("time = %q", got)
	}
	if got := logAttr(line, "pid"); got != "" {
		t.Errorf("pid = %q, want none (new_pid is another key)", got)
	}
	if got := logMsg(`time=x level=INFO msg=moved conn=b`); got != "moved" {
		t.Errorf("logMsg = %q", got)
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
