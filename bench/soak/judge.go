package main

import (
	"strings"
	"time"
)

// kill is one SIGKILL of a backend: sent At, process reaped at Dead.
type kill struct {
	PID      int
	Slot     int
	Upstream string
	At       time.Time
	Dead     time.Time
}

// Findings for one stream.
const (
	findingOK          = "ok"
	findingAllowed     = "allowed"     // failed, explained by a kill, seen as a failure
	findingUnexplained = "unexplained" // anything else that is not ok
)

// finding is the judgement of one stream from both ends' accounts.
type finding struct {
	Result  string // findingOK, findingAllowed, findingUnexplained
	Cause   string // "client down:reset", "backend up:clean_eof_short", ...
	Lost    int64  // bytes missing from streams that ended cleanly
	Corrupt int64  // bytes that arrived different
}

// judge attributes failures to kills. A failure is allowed only where the
// backend the stream was talking to was killed while it ran (if the client
// never learnt which backend, any backend of its upstream dying during the
// stream will do), and only as a failure: a clean end with short or wrong
// bytes is never explained by a kill.
type judge struct {
	kills []kill
	byPID map[int]kill
}

func newJudge(kills []kill) *judge {
	j := &judge{kills: kills, byPID: make(map[int]kill, len(kills))}
	for _, k := range kills {
		j.byPID[k.PID] = k
	}
	return j
}

// killedUnder says whether the stream's backend died while the stream ran.
func (j *judge) killedUnder(c clientResult) bool {
	if c.Instance != 0 {
		k, ok := j.byPID[c.Instance]
		return ok && !k.At.After(c.End)
	}
	for _, k := range j.kills {
		if k.Upstream == c.Kind.upstream() && !k.At.After(c.End) && !k.Dead.Before(c.Start) {
			return true
		}
	}
	return false
}

// failureMayBeKill says whether a client failure in this phase can come
// from a backend's death at all. A TLS handshake that sluice terminates
// happens before sluice dials any backend; a timeout is a hang, which an
// abort passed on as an abort never causes. A dial can end in a reset: on
// a plain listener sluice accepts and dials the backend at once, and the
// kernel completes the client's connect before the client's goroutine
// asks for the result (SO_ERROR), which by then may be the RST of the
// dead backend passed on.
func failureMayBeKill(c clientResult) bool {
	phase, cause, _ := strings.Cut(c.Cause, ":")
	switch {
	case cause == "timeout":
		return false
	case phase == "dial":
		return cause == "reset"
	case phase == "handshake":
		return c.Kind == kindPassthrough
	}
	return true
}

// judge returns the finding for one stream; b is the backend's verdict, nil
// if none came.
func (j *judge) judge(c clientResult, b *verdict) finding {
	var f finding
	if c.Status == statusTruncated {
		f.Lost += c.Down - c.DownGot
	}
	f.Corrupt += c.Corrupt
	if b != nil {
		if b.Status == statusTruncated {
			f.Lost += b.Want - b.Got
		}
		f.Corrupt += b.Corrupt
	}
	switch {
	case c.Status == statusTruncated || c.Status == statusCorrupted:
		f.Result, f.Cause = findingUnexplained, "client "+c.Cause
	case b != nil && b.Status != statusOK:
		f.Result, f.Cause = findingUnexplained, "backend "+b.Cause
	case c.Status == statusOK && b != nil:
		f.Result = findingOK
	case c.Status == statusOK:
		// The client got everything, the backend said nothing: fine only
		// if it died before it could (after the client's end, even).
		f.Cause = "backend verdict missing"
		f.Result = findingUnexplained
		if _, killed := j.byPID[c.Instance]; killed {
			f.Result = findingAllowed
		}
	default:
		f.Cause = "client " + c.Cause
		f.Result = findingUnexplained
		if failureMayBeKill(c) && j.killedUnder(c) {
			f.Result = findingAllowed
		}
	}
	return f
}
