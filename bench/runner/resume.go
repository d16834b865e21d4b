package main

import (
	"fmt"
	"maps"
	"time"
)

// minResumed is the fraction of S3r's handshakes, and of S7's second
// storm's, that must have resumed a session: fewer means the peer's ticket
// listener does not resume (misconfigured), and the run measured full
// handshakes under another name.
const minResumed = 0.9

// connsS3r is how many connections S3r keeps in flight, as wrk -c64 does
// in S3.
const connsS3r = 64

// resumedConns is S3r: like S3, a connection per request (connect,
// handshake, GET / with Connection: close, the response read to EOF), from
// connsS3r loadgen workers for the wrk duration, but the client keeps the
// session tickets (wrk cannot) and the peer's TLSR listener issues them,
// so all but the first handshakes resume. The peer's CPU is measured over
// the run, as wrkCPU does.
func (r *runner) resumedConns(p *peer) (metrics, error) {
	pb := r.startProbe(p)
	lg, err := r.loadgen("-mode", "conn", "-addr", fmt.Sprintf("127.0.0.1:%d", p.data(r).TLSR),
		"-conns", fmt.Sprint(connsS3r), "-resume", "-duration", r.duration.String(),
		"-timeout", (r.duration + time.Minute).String(), "-src", r.srcRange)
	if err != nil {
		return nil, err
	}
	defer lg.finish()
	var res struct {
		Requests, Handshakes, Resumed, Failed float64
		P50                                   float64  `json:"p50_ms"`
		P99                                   float64  `json:"p99_ms"`
		Seconds                               float64  `json:"seconds"`
		Errors                                []string `json:"errors"`
	}
	if err := lg.expect("RESULT", &res); err != nil {
		return nil, err
	}
	used, diag := pb.finish(r, p, res.Requests)
	cpu := used.cpuSeconds()
	// As for wrk: more than a few failures measure error paths.
	if res.Handshakes == 0 || res.Failed > res.Requests/100 {
		return nil, fmt.Errorf("loadgen: %.0f failed connections, %.0f requests completed (errors: %q)", res.Failed, res.Requests, res.Errors)
	}
	resumed := res.Resumed / res.Handshakes
	if resumed < minResumed {
		return nil, fmt.Errorf("only %.0f of %.0f handshakes resumed a session (%.1f%%, want at least %.0f%%): does the peer's ticket listener (port %d) issue tickets?",
			res.Resumed, res.Handshakes, 100*resumed, 100*minResumed, p.data(r).TLSR)
	}
	m := metrics{
		"rps":     res.Requests / res.Seconds,
		"p50_ms":  res.P50,
		"p99_ms":  res.P99,
		"resumed": resumed,
		"errors":  res.Failed,
	}
	if cpu > 0 {
		m["cpu_s"] = cpu
		m["cpu_busy"] = cpu / res.Seconds
		m["req_per_cpu_s"] = res.Requests / cpu
	}
	maps.Copy(m, diag)
	return m, nil
}
