package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// tally counts streams of one group (a kind, a mode, or all).
type tally struct {
	Streams     int   `json:"streams"`
	OK          int   `json:"ok"`
	Allowed     int   `json:"allowed_failures"`
	Unexplained int   `json:"unexplained"`
	UpBytes     int64 `json:"up_bytes_verified"`
	DownBytes   int64 `json:"down_bytes_verified"`
}

func (t *tally) add(c clientResult, b *verdict, f finding) {
	t.Streams++
	switch f.Result {
	case findingOK:
		t.OK++
	case findingAllowed:
		t.Allowed++
	default:
		t.Unexplained++
	}
	if c.Status == statusOK {
		t.DownBytes += c.DownGot
	}
	if b != nil && b.Status == statusOK {
		t.UpBytes += b.Got
	}
}

// causeTally counts failures of one cause.
type causeTally struct {
	Allowed     int `json:"allowed"`
	Unexplained int `json:"unexplained"`
}

// report is the soak's result, printed for people and written as JSON.
type report struct {
	Duration       string                 `json:"duration"`
	Workers        int                    `json:"workers"`
	All            tally                  `json:"all"`
	ByKind         map[string]*tally      `json:"by_kind"`
	ByMode         map[string]*tally      `json:"by_mode"`
	Failures       map[string]*causeTally `json:"failures"`
	LostBytes      int64                  `json:"lost_bytes"`
	CorruptBytes   int64                  `json:"corrupted_bytes"`
	TruncStreams   int                    `json:"truncated_streams"`
	Examples       []string               `json:"unexplained_examples"`
	Kills          int                    `json:"kills"`
	Restarts       int                    `json:"restarts"`
	Reloads        int                    `json:"reloads"`
	RefusedReloads int                    `json:"refused_reloads"`
	Upgrades       []upgrade              `json:"upgrades"`
	Moved          int                    `json:"moved_connections"`   // as the old processes counted them
	Staying        int                    `json:"staying_connections"` // likewise
	MovedStreams   tally                  `json:"moved_streams"`       // streams whose connection moved (by the log)
	StreamMoves    int                    `json:"stream_moves"`        // their moves: a stream may move at more than one upgrade
	UnmatchedMoves []movedLine            `json:"unmatched_moves"`     // msg=moved lines no stream accounts for
	SluiceBase     usage                  `json:"sluice_baseline"`
	SluiceEnd      usage                  `json:"sluice_end"`
	SelfBase       usage                  `json:"soak_baseline"`
	SelfEnd        usage                  `json:"soak_end"`
	SluiceExit     string                 `json:"sluice_exit"`
	Log            logScan                `json:"sluice_log"`
	Problems       []string               `json:"problems"`
	Pass           bool                   `json:"pass"`
}

// judgeAll joins each client result with its backend verdict.
func (r *report) judgeAll(results []clientResult, vs *verdicts, j *judge) {
	r.ByKind, r.ByMode, r.Failures = map[string]*tally{}, map[string]*tally{}, map[string]*causeTally{}
	for k := range numKinds {
		r.ByKind[k.String()] = &tally{}
	}
	for m := range numModes {
		r.ByMode[m.String()] = &tally{}
	}
	moves, unmatched := r.Log.streamMoves(results)
	r.UnmatchedMoves = unmatched
	seen := make(map[uint64]bool, len(results))
	for _, c := range results {
		seen[c.ID] = true
		var b *verdict
		if v, ok := vs.byID[c.ID]; ok {
			b = &v
		}
		f := j.judge(c, b)
		r.All.add(c, b, f)
		r.ByKind[c.Kind.String()].add(c, b, f)
		r.ByMode[c.Mode.String()].add(c, b, f)
		if n := moves[c.ID]; n > 0 {
			r.MovedStreams.add(c, b, f)
			r.StreamMoves += n
		}
		r.LostBytes += f.Lost
		r.CorruptBytes += f.Corrupt
		if c.Status == statusTruncated || (b != nil && b.Status == statusTruncated) {
			r.TruncStreams++
		}
		if f.Result == findingOK {
			continue
		}
		ct := r.Failures[f.Cause]
		if ct == nil {
			ct = &causeTally{}
			r.Failures[f.Cause] = ct
		}
		if f.Result == findingAllowed {
			ct.Allowed++
			continue
		}
		ct.Unexplained++
		if len(r.Examples) < 20 {
			r.Examples = append(r.Examples, fmt.Sprintf("stream %d %s %s up=%d down=%d start=%s dur=%s instance=%d: client %s %s (down got %d) backend %s",
				c.ID, c.Kind, c.Mode, c.Up, c.Down, c.Start.Format("15:04:05.000"), c.End.Sub(c.Start).Round(1e6),
				c.Instance, c.Status, c.Cause, c.DownGot, describeVerdict(b)))
		}
	}
	for _, v := range vs.byID {
		if !seen[v.ID] {
			r.Problems = append(r.Problems, fmt.Sprintf("backend verdict for a stream no client ran: %+v", v))
		}
	}
	for _, v := range vs.extra {
		r.Problems = append(r.Problems, fmt.Sprintf("backend verdict without a stream (id 0 or a second one): %+v", v))
	}
	for _, l := range vs.badLines {
		r.Problems = append(r.Problems, fmt.Sprintf("backend printed %q", l))
	}
}

func describeVerdict(b *verdict) string {
	if b == nil {
		return "none"
	}
	return fmt.Sprintf("pid %d %s %s (up got %d of %d)", b.PID, b.Status, b.Cause, b.Got, b.Want)
}

// decide sets Pass, adding a problem for each reason the run fails.
func (r *report) decide() {
	if r.All.Unexplained > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d streams failed without a kill to explain it", r.All.Unexplained))
	}
	if r.LostBytes > 0 || r.CorruptBytes > 0 || r.TruncStreams > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d bytes lost (%d streams ended clean but short), %d corrupted", r.LostBytes, r.TruncStreams, r.CorruptBytes))
	}
	for _, k := range slices.Sorted(maps.Keys(r.ByKind)) {
		if r.ByKind[k].OK == 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("no verified stream through the %s route", k))
		}
	}
	if r.Log.Panics > 0 || r.Log.ErrorCount > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("sluice's log: %d panic lines, %d unexpected ERROR lines", r.Log.Panics, r.Log.ErrorCount))
	}
	if r.Log.RefusedReloads != r.RefusedReloads {
		r.Problems = append(r.Problems, fmt.Sprintf("sluice logged %d refused reloads, the soak made %d", r.Log.RefusedReloads, r.RefusedReloads))
	}
	if r.StreamMoves != r.Log.Moved {
		r.Problems = append(r.Problems, fmt.Sprintf("%d msg=moved lines, but %d moves of %d streams while they ran", r.Log.Moved, r.StreamMoves, r.MovedStreams.Streams))
		for _, m := range r.UnmatchedMoves[:min(len(r.UnmatchedMoves), 5)] {
			r.Problems = append(r.Problems, fmt.Sprintf("msg=moved conn=%s listener=%s client=%s, started %s: %s",
				m.Conn, m.Listener, m.Client, m.Start.Format(timeMicros), m.Why))
		}
	}
	if r.Log.Moved != r.Moved || r.Log.TakenOver != r.Moved {
		r.Problems = append(r.Problems, fmt.Sprintf("the old processes counted %d connections moved, logged %d msg=moved lines; the new ones took over %d",
			r.Moved, r.Log.Moved, r.Log.TakenOver))
	}
	if procs := 1 + len(r.Upgrades); r.Log.Started != procs || (r.SluiceExit == "0" && r.Log.Stopped != procs) {
		r.Problems = append(r.Problems, fmt.Sprintf("sluice logged %d starts and %d stops, for %d processes (1 + %d upgrades)",
			r.Log.Started, r.Log.Stopped, procs, len(r.Upgrades)))
	}
	r.Pass = len(r.Problems) == 0
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "soak: %s, %d workers, %d kills (%d restarts), %d reloads + %d refused, %d upgrades\n",
		r.Duration, r.Workers, r.Kills, r.Restarts, r.Reloads, r.RefusedReloads, len(r.Upgrades))
	var ready, moved, gone time.Duration
	for _, u := range r.Upgrades {
		ready, moved, gone = max(ready, u.Ready), max(moved, u.Done), max(gone, u.OldGone)
	}
	fmt.Fprintf(w, "upgrades: %d, connections moved %d, staying %d; slowest: new process ready %v, moved %v, old process gone %v after\n",
		len(r.Upgrades), r.Moved, r.Staying, ready.Round(time.Millisecond), moved.Round(time.Millisecond), gone.Round(time.Millisecond))
	fmt.Fprintf(w, "streams: %d, ok %d, failed with a kill under them %d, unexplained %d\n",
		r.All.Streams, r.All.OK, r.All.Allowed, r.All.Unexplained)
	fmt.Fprintf(w, "bytes verified (SHA-256 at the receiving end): up %s, down %s\n", mib(r.All.UpBytes), mib(r.All.DownBytes))
	fmt.Fprintf(w, "lost %d, corrupted %d, streams ended clean but short %d\n", r.LostBytes, r.CorruptBytes, r.TruncStreams)
	m := r.MovedStreams
	fmt.Fprintf(w, "streams moved to a new process mid-stream: %d, ok %d, failed with a kill under them %d, unexplained %d; verified up %s, down %s\n",
		m.Streams, m.OK, m.Allowed, m.Unexplained, mib(m.UpBytes), mib(m.DownBytes))
	printTallies(w, "route", r.ByKind)
	printTallies(w, "half-close", r.ByMode)
	fmt.Fprintf(w, "failures by cause:\n")
	if len(r.Failures) == 0 {
		fmt.Fprintf(w, "  none\n")
	}
	for _, c := range slices.Sorted(maps.Keys(r.Failures)) {
		fmt.Fprintf(w, "  %-44s allowed %6d  unexplained %6d\n", c, r.Failures[c].Allowed, r.Failures[c].Unexplained)
	}
	fmt.Fprintf(w, "sluice: goroutines %d -> %d, fds %d -> %d, pooled splice pipes %d -> %d (2 fds each); exit: %s\n",
		r.SluiceBase.Goroutines, r.SluiceEnd.Goroutines, r.SluiceBase.FDs, r.SluiceEnd.FDs,
		r.SluiceBase.Pipes, r.SluiceEnd.Pipes, r.SluiceExit)
	fmt.Fprintf(w, "soak controller: goroutines %d -> %d, fds %d -> %d\n",
		r.SelfBase.Goroutines, r.SelfEnd.Goroutines, r.SelfBase.FDs, r.SelfEnd.FDs)
	fmt.Fprintf(w, "sluice log: %d lines, %d WARN, %d ERROR for the refused reload, %d other ERROR, %d panic; %d starts, %d stops, %d moved, %d taken over\n",
		r.Log.Lines, r.Log.Warns, r.Log.RefusedReloads, r.Log.ErrorCount, r.Log.Panics, r.Log.Started, r.Log.Stopped, r.Log.Moved, r.Log.TakenOver)
	var reasons []string
	for _, k := range slices.Sorted(maps.Keys(r.Log.Reasons)) {
		reasons = append(reasons, fmt.Sprintf("%s=%d", k, r.Log.Reasons[k]))
	}
	fmt.Fprintf(w, "sluice access reasons: %s\n", strings.Join(reasons, " "))
	for _, l := range r.Log.Errors {
		fmt.Fprintf(w, "  log: %s\n", l)
	}
	for _, e := range r.Examples {
		fmt.Fprintf(w, "  unexplained: %s\n", e)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "FAIL: %s\n", p)
	}
	if r.Pass {
		fmt.Fprintf(w, "PASS\n")
	}
}

func printTallies(w io.Writer, title string, ts map[string]*tally) {
	fmt.Fprintf(w, "%-14s %8s %8s %8s %8s %12s %12s\n", title, "streams", "ok", "allowed", "unexpl", "up", "down")
	for _, k := range slices.Sorted(maps.Keys(ts)) {
		t := ts[k]
		fmt.Fprintf(w, "  %-12s %8d %8d %8d %8d %12s %12s\n", k, t.Streams, t.OK, t.Allowed, t.Unexplained, mib(t.UpBytes), mib(t.DownBytes))
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
