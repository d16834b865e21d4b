package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// S7's settings. The stayers are 1% of the connections, at least 10 so
// that a small run has echoes to measure and at most 100; each echoes
// every 100 ms, so a storm of a second gives hundreds of round trips. The
// dial timeout leaves room for SYN retransmits (1 s, 3 s, 7 s after the
// first) when a listen queue overflows: that is part of what a storm
// costs, and cutting it short would count it as failures.
const (
	stormStayRate    = 10 // messages a second per stayer
	stormDialTimeout = 30 * time.Second
	stormTimeout     = 5 * time.Minute
)

// stormName names a storm in metric keys and the stayers' windows.
func stormName(resume bool) string {
	if resume {
		return "resumed"
	}
	return "full"
}

// stormMetrics are S7's metrics, each measured in both storms (full_* and
// resumed_*): the headline ones, which ratios are quoted for, and the
// others.
func stormMetrics() (headline, extra []metricInfo) {
	per := []struct {
		key, label       string
		higher, headline bool
	}{
		{"all_back_s", "seconds until all are back", false, true},
		{"upgrade_p99_ms", "upgrade p99 ms", false, true},
		{"failed", "failed reopens", false, true},
		{"stayers_p99_ms", "stayers' echo p99 ms", false, true},
		{"upgrade_p50_ms", "upgrade p50 ms", false, false},
		{"resumed", "fraction of handshakes resumed", true, false},
		{"cpu_s", "terminator CPU-s", false, false},
		{"term_busy", "terminator CPU-s per second of storm", false, false},
		{"gc_cpu_s", "GC CPU-s (Go programs, from gctrace)", false, false},
		{"gcs", "collections (Go programs)", false, false},
		{"sys_share", "terminator CPU-s in the kernel (share)", false, false},
		{"faults", "terminator's minor page faults", false, false},
		{"load_busy", "load CPU busy fraction", false, false},
		{"stayers_p50_ms", "stayers' echo p50 ms", false, false},
		{"stayers_dropped", "stayers dropped", false, false},
	}
	for _, resume := range []bool{false, true} {
		name := stormName(resume)
		for _, m := range per {
			mi := metricInfo{name + "_" + m.key, name + " storm: " + m.label, m.higher}
			if m.headline {
				headline = append(headline, mi)
			} else {
				extra = append(extra, mi)
			}
		}
	}
	extra = append(extra,
		metricInfo{"calm_p99_ms", "stayers' echo p99 ms between storms", false},
		metricInfo{"calm_stayers_dropped", "stayers dropped between storms", false},
		metricInfo{"open_failed", "failed connections before the storms", false})
	return headline, extra
}

// stormResult is one storm of loadgen's storm mode RESULT.
type stormResult struct {
	Resume   bool
	Movers   int
	Reopened int
	Failed   int
	Resumed  int
	AllBack  float64 `json:"all_back_s"`
	P50      float64 `json:"upgrade_p50_ms"`
	P99      float64 `json:"upgrade_p99_ms"`
	Errors   []string
}

// echoSummary is one window of loadgen's stay mode RESULT.
type echoSummary struct {
	Messages, Errors int
	Dropped          int     `json:"dropped_conns"`
	P50              float64 `json:"p50_ms"`
	P99              float64 `json:"p99_ms"`
	Timeline         []slotSummary
}

// slotSummary is a quarter second of a storm window's timeline: the
// round trips sent in it, and the slowest.
type slotSummary struct {
	At  float64 `json:"at_s"`
	N   int
	Max float64 `json:"max_ms"`
}

// stallLine names the storm's slowest quarter seconds for the stayers,
// the worst first, with when each began (seconds from the storm's start):
// the stayers' p99 is about the longest stall, and when it came tells
// what caused it (the old connections' ends come first, the new ones'
// handshakes after).
func stallLine(tl []slotSummary, n int) string {
	tl = slices.Clone(tl)
	slices.SortStableFunc(tl, func(a, b slotSummary) int { return cmp.Compare(b.Max, a.Max) })
	var b strings.Builder
	for i, sl := range tl[:min(n, len(tl))] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%g ms at %g s", sl.Max, sl.At)
	}
	return b.String()
}

// storm is S7 on a fresh peer: r.conns wss:// connections to the peer's
// ticket listener (WSR), in two loadgens. 1% of them (stay mode) stay
// open and echo throughout; the others (storm mode) are closed and
// reopened all at once, first with full handshakes, then resuming the
// sessions of the first storm. Each storm is the stayers' window: on
// storm mode's STORM the runner names the window in stay mode, waits for
// it to apply, reads the peer's CPU and releases the storm; on CALM it
// reads the CPU again and goes back to the calm window. The stayers are
// a process of their own: in the storm's, their round trips would queue
// behind its handshakes in one Go scheduler, and measure that.
func (r *runner) storm(p *peer) (metrics, error) {
	url := fmt.Sprintf("wss://127.0.0.1:%d/echo", p.data(r).WSR)
	stay := min(100, max(10, r.conns/100))
	common := []string{"-url", url, "-dial-timeout", stormDialTimeout.String(), "-timeout", stormTimeout.String(), "-src", r.srcRange}
	stayers, err := r.loadgen(append([]string{"-mode", "stay", "-conns", fmt.Sprint(stay), "-rate", fmt.Sprint(stormStayRate)}, common...)...)
	if err != nil {
		return nil, err
	}
	defer stayers.finish()
	var stayReady, ready struct{ Opened, Failed int }
	if err := stayers.expect("READY", &stayReady); err != nil {
		return nil, fmt.Errorf("stayers: %w", err)
	}
	movers, err := r.loadgen(append([]string{"-mode", "storm", "-conns", fmt.Sprint(r.conns - stay)}, common...)...)
	if err != nil {
		return nil, err
	}
	defer movers.finish()
	if err := movers.expect("READY", &ready); err != nil {
		return nil, err
	}
	// Let the peer finish its side of the last connections (the backend
	// connects) before the storms.
	settle(p)
	if err := stayers.send("GO"); err != nil {
		return nil, err
	}
	if err := movers.send("GO"); err != nil {
		return nil, err
	}
	window := func(name string) error {
		if err := stayers.send("WINDOW " + name); err != nil {
			return err
		}
		var ack struct{ Name string }
		if err := stayers.expect("WINDOW", &ack); err != nil {
			return fmt.Errorf("stayers: %w", err)
		}
		return nil
	}
	storms := map[string]*stormCPU{} // by stormName
	var res struct{ Storms []stormResult }
	for done := false; !done; {
		tag, js, err := movers.next("STORM", "CALM", "RESULT")
		if err != nil {
			return nil, err
		}
		var mark struct{ Resume bool }
		switch tag {
		case "STORM":
			if err := json.Unmarshal(js, &mark); err != nil {
				return nil, fmt.Errorf("STORM %s: %w", js, err)
			}
			if err := window(stormName(mark.Resume)); err != nil {
				return nil, err
			}
			storms[stormName(mark.Resume)] = startStormCPU(p, r.loadCPU)
			if err := movers.send("GO"); err != nil {
				return nil, err
			}
		case "CALM":
			if err := json.Unmarshal(js, &mark); err != nil {
				return nil, fmt.Errorf("CALM %s: %w", js, err)
			}
			if sc := storms[stormName(mark.Resume)]; sc != nil {
				sc.end(p, r.loadCPU)
			}
			if err := window("calm"); err != nil {
				return nil, err
			}
		case "RESULT":
			if err := json.Unmarshal(js, &res); err != nil {
				return nil, fmt.Errorf("RESULT %s: %w", js, err)
			}
			done = true
		}
	}
	stayers.in.Close() // EOF: the stayers stop and report
	var windows struct{ Windows map[string]echoSummary }
	if err := stayers.expect("RESULT", &windows); err != nil {
		return nil, fmt.Errorf("stayers: %w", err)
	}
	if len(res.Storms) != 2 {
		return nil, fmt.Errorf("loadgen ran %d storms of 2 within %v", len(res.Storms), stormTimeout)
	}

	m := metrics{
		"open_failed":          float64(ready.Failed + stayReady.Failed),
		"calm_p99_ms":          windows.Windows["calm"].P99,
		"calm_stayers_dropped": float64(windows.Windows["calm"].Dropped),
	}
	for _, st := range res.Storms {
		name := stormName(st.Resume)
		if st.Reopened > 0 {
			resumed := float64(st.Resumed) / float64(st.Reopened)
			// A resumed full storm is loadgen's fault; an unresumed
			// resumed one the peer's ticket listener's.
			if !st.Resume && st.Resumed > 0 {
				return nil, fmt.Errorf("full storm: %d of %d handshakes resumed: loadgen did not start from empty session caches", st.Resumed, st.Reopened)
			}
			if st.Resume && resumed < minResumed {
				return nil, fmt.Errorf("resumed storm: only %d of %d handshakes resumed a session (want at least %.0f%%): does the peer's ticket listener (port %d) issue tickets?",
					st.Resumed, st.Reopened, 100*minResumed, p.data(r).WSR)
			}
			m[name+"_resumed"] = resumed
			m[name+"_upgrade_p50_ms"] = st.P50
			m[name+"_upgrade_p99_ms"] = st.P99
			m[name+"_all_back_s"] = st.AllBack
		}
		if st.Failed > 0 {
			fmt.Fprintf(r.progress, "bench: S7 %s, %s storm: %d of %d reopens failed: %q\n", p.name, name, st.Failed, st.Movers, st.Errors)
		}
		w := windows.Windows[name]
		if len(w.Timeline) > 0 {
			fmt.Fprintf(r.progress, "        S7 %s, %s storm (all back in %g s): stayers' slowest quarter seconds %s\n",
				p.name, name, st.AllBack, stallLine(w.Timeline, 4))
		}
		m[name+"_failed"] = float64(st.Failed)
		if sc := storms[name]; sc != nil {
			sc.record(m, name)
		}
		m[name+"_stayers_p50_ms"] = w.P50
		m[name+"_stayers_p99_ms"] = w.P99
		m[name+"_stayers_dropped"] = float64(w.Dropped)
	}
	return m, nil
}

// stormCPU is what one storm cost the terminator, and how busy the load
// CPU (the storm's client, the stayers and the backend) was meanwhile: a
// storm that keeps the load CPU busier than the terminator's measures the
// client, not the terminator.
type stormCPU struct {
	start          time.Time
	cpu            float64 // the terminator's CPU-s
	perS           float64 // its CPU-s per second of storm
	busy0, total0  uint64  // the load CPU's ticks at the start
	loadBusy       float64
	ended, hasLoad bool
	// For a Go peer: its log sizes at the start and the collections
	// the storm added (gctrace.go).
	logs []int64
	gc   *gcStats
	// used is the peer's usage at the start, then what the storm used.
	used usage
}

func startStormCPU(p *peer, loadCPU string) *stormCPU {
	sc := &stormCPU{start: time.Now(), used: p.usage()}
	sc.busy0, sc.total0 = cpuBusy(loadCPU)
	if p.gcTraced() {
		sc.logs = p.logSizes()
	}
	return sc
}

// end reads the CPU again once the storm is over.
func (sc *stormCPU) end(p *peer, loadCPU string) {
	sc.used = p.usage().since(sc.used)
	sc.cpu = sc.used.cpuSeconds()
	if s := time.Since(sc.start).Seconds(); s > 0 {
		sc.perS = sc.cpu / s
	}
	// Not when /proc/stat has no line for loadCPU.
	if b, t := cpuBusy(loadCPU); t > sc.total0 {
		sc.loadBusy, sc.hasLoad = float64(b-sc.busy0)/float64(t-sc.total0), true
	}
	if sc.logs != nil {
		gc := p.gcSince(sc.logs)
		sc.gc = &gc
	}
	sc.ended = true
}

// record puts the storm's figures in m under name's keys.
func (sc *stormCPU) record(m metrics, name string) {
	if !sc.ended {
		return
	}
	m[name+"_cpu_s"] = sc.cpu
	m[name+"_term_busy"] = sc.perS
	if sc.hasLoad {
		m[name+"_load_busy"] = sc.loadBusy
	}
	if share, ok := sc.used.sysShare(); ok {
		m[name+"_sys_share"] = share
	}
	m[name+"_faults"] = float64(sc.used.minflt)
	if sc.gc != nil {
		m[name+"_gcs"] = float64(sc.gc.cycles)
		m[name+"_gc_cpu_s"] = sc.gc.cpuMS / 1000
	}
}
