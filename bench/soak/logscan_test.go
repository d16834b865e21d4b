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
	cases := []struct {
		name             string
		listener, client string
		start, end       string
		moved            bool
	}{
		// The moved line: at 2.5s, the connection 1s old.
		{"moved while it ran", "plain", "127.0.0.1:5001", "1.4s", "3s", true},
		{"ended in the new process before the old one wrote its line", "plain", "127.0.0.1:5001", "1.4s", "2.4s", true},
		{"started within the line's millisecond", "plain", "127.0.0.1:5001", "1.5004s", "3s", true},
		{"the connection before on the same port", "plain", "127.0.0.1:5001", "0.5s", "1.4s", false},
		{"the connection after on the same port", "plain", "127.0.0.1:5001", "2.6s", "3s", false},
		{"same port, another listener", "passthrough", "127.0.0.1:5001", "1.4s", "3s", false},
		{"another port", "plain", "127.0.0.1:5000", "0s", "3s", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ls.movedDuring(c.listener, c.client, at(c.start), at(c.end)); (got > 0) != c.moved {
				t.Errorf("movedDuring = %v, want %v", got, c.moved)
			}
		})
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
