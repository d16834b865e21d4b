package main

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestJudge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	kills := []kill{
		{PID: 100, Upstream: "term", At: at(10), Dead: at(10.1)},
		{PID: 200, Upstream: "pass", At: at(20), Dead: at(20.1)},
	}
	j := newJudge(kills)
	stream := func(k kind, inst int, start, end float64, status, cause string) clientResult {
		return clientResult{ID: 1, Kind: k, Up: 1000, Down: 500, Start: at(start), End: at(end),
			Instance: inst, Status: status, Cause: cause}
	}
	okV := &verdict{ID: 1, Status: statusOK, Got: 1000, Want: 1000}
	cases := []struct {
		name   string
		c      clientResult
		b      *verdict
		result string
		lost   int64
	}{
		{"both ok", withGot(stream(kindTerminate, 100, 1, 2, statusOK, ""), 500), okV, findingOK, 0},
		{"reset while its backend died", stream(kindTerminate, 100, 9, 10.5, statusFail, "down:reset"), nil, findingAllowed, 0},
		{"reset, its backend died after the stream", stream(kindTerminate, 100, 1, 2, statusFail, "down:reset"), nil, findingUnexplained, 0},
		{"reset, another backend died", stream(kindTerminate, 101, 9, 10.5, statusFail, "down:reset"), nil, findingUnexplained, 0},
		{"reset, backend unknown, one of its upstream died", stream(kindTerminate, 0, 9, 10.5, statusFail, "ack:reset"), nil, findingAllowed, 0},
		{"reset, backend unknown, another upstream's died", stream(kindPlain, 0, 9, 10.5, statusFail, "ack:reset"), nil, findingUnexplained, 0},
		{"reset, backend unknown, started after the death", stream(kindTerminate, 0, 10.2, 10.5, statusFail, "ack:reset"), nil, findingUnexplained, 0},
		{"clean but short, its backend died", withGot(stream(kindTerminate, 100, 9, 10.5, statusTruncated, "down:clean_eof_short"), 200), nil, findingUnexplained, 300},
		{"clean before the ack", stream(kindTerminate, 0, 9, 10.5, statusTruncated, "ack:clean_eof_short"), nil, findingUnexplained, 500},
		{"hang while its backend died", stream(kindTerminate, 100, 9, 10.5, statusFail, "down:timeout"), nil, findingUnexplained, 0},
		{"dial refused", stream(kindTerminate, 0, 9, 10.5, statusFail, "dial:refused"), nil, findingUnexplained, 0},
		{"dial reset while a backend died", stream(kindTerminate, 0, 9, 10.5, statusFail, "dial:reset"), nil, findingAllowed, 0},
		{"terminating handshake", stream(kindTerminate, 0, 9, 10.5, statusFail, "handshake:reset"), nil, findingUnexplained, 0},
		{"passthrough handshake", stream(kindPassthrough, 0, 19, 20.5, statusFail, "handshake:reset"), nil, findingAllowed, 0},
		{"client ok, verdict missing, backend killed later", withGot(stream(kindTerminate, 100, 1, 2, statusOK, ""), 500), nil, findingAllowed, 0},
		{"client ok, verdict missing, backend alive", withGot(stream(kindTerminate, 101, 1, 2, statusOK, ""), 500), nil, findingUnexplained, 0},
		{"client ok, backend reset", withGot(stream(kindTerminate, 101, 1, 2, statusOK, ""), 500),
			&verdict{ID: 1, Status: statusFail, Cause: "up:reset", Got: 1000, Want: 1000}, findingUnexplained, 0},
		{"upload cut clean", withGot(stream(kindTerminate, 100, 9, 10.5, statusFail, "down:reset"), 0),
			&verdict{ID: 1, Status: statusTruncated, Cause: "up:clean_eof_short", Got: 10, Want: 1000}, findingUnexplained, 990},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := j.judge(tc.c, tc.b)
			if f.Result != tc.result || f.Lost != tc.lost {
				t.Errorf("got %+v, want %s with %d lost", f, tc.result, tc.lost)
			}
		})
	}
}

func withGot(c clientResult, got int64) clientResult {
	c.DownGot = got
	return c
}

func TestOutcomeStatus(t *testing.T) {
	cases := []struct {
		name   string
		o      outcome
		status string
		cause  string
	}{
		{"ok", outcome{recvRan: true, rcv: received{Want: 3, Got: 3, sumOK: true}}, statusOK, ""},
		{"send reset, receive ok", outcome{recvRan: true, sendErr: errReset(), rcv: received{Want: 3, Got: 3, sumOK: true}}, statusFail, "up:reset"},
		{"send failed first", outcome{sendErr: errReset()}, statusFail, "up:reset"},
		{"short clean beats send error", outcome{recvRan: true, sendErr: errReset(), rcv: received{Want: 3, Got: 1}}, statusTruncated, "down:clean_eof_short"},
		{"receive error, send met our abort", outcome{recvRan: true, sendErr: errClosed(), rcv: received{Want: 3, Got: 1, Err: errReset()}}, statusFail, "down:reset"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, c := tc.o.status("up", "down")
			if s != tc.status || c != tc.cause {
				t.Errorf("got %s %s, want %s %s", s, c, tc.status, tc.cause)
			}
		})
	}
}

func errReset() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
}

func errClosed() error { return &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed} }
