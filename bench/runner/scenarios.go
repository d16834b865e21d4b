package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// metrics are one run's measurements, by name.
type metrics map[string]float64

// metricInfo says how to show a metric and which way is better.
type metricInfo struct {
	key, label string
	higher     bool // higher is better
}

// scenario is one workload, run against every peer that supports it.
type scenario struct {
	id, title string
	// headline metrics are the ones ratios are quoted for.
	metrics []metricInfo
	// extra metrics are shown for each peer without ratios: a check on the
	// run (the fraction of handshakes resumed) or a figure that explains
	// a headline one.
	extra []metricInfo
	// run measures p once; ok=false means the peer cannot do this workload.
	run func(r *runner, p *peer) (metrics, error)
	// direct, if set, measures the same workload with no terminator:
	// before each peer's run, or with directOnce once per repetition.
	direct     func(r *runner) (metrics, error)
	directOnce bool
	// fresh restarts the peer before each run (memory scenarios).
	fresh bool
	// applies reports whether a peer can run the scenario.
	applies func(p *peer) bool
	// checkListener names sluice's listener whose metrics a peer with the
	// admin listener (sluice+metrics) has checked against wrk's totals
	// in each run (metricscheck.go): only keep-alive wrk scenarios over
	// a TLS listener, where the connections wrk opens and its request
	// size pin the counters down. Empty: not checked.
	checkListener string
	// eachRun lists each peer's headline figures run by run, in the
	// order they ran, under the table: where single runs spread wider
	// than the peers differ (S7), a median of three hides whether one run
	// or all of them set it.
	eachRun bool
	// diag are figures that explain a run's CPU (probe.go): not in the
	// table, but listed run by run with the headline ones.
	diag []metricInfo
	// repsFactor multiplies -reps for this scenario (zero: 1). S7's runs
	// of one build spread by a third, more than the peers differ: medians
	// of three gave nginx a lead that six side by side did not
	// (bench/README.md, "S7 side by side, six repetitions").
	repsFactor int
}

// reps is how many times the scenario runs per peer when -reps is n.
func (sc *scenario) reps(n int) int {
	return n * max(sc.repsFactor, 1)
}

// scenarios are every workload; wsQuiet is S5s's interval between two
// messages on one connection.
func scenarios(wsQuiet time.Duration) []*scenario {
	all := func(*peer) bool { return true }
	plain := func(p *peer) bool { return p.plain }
	stormHeadline, stormExtra := stormMetrics()
	return []*scenario{
		{
			id: "S1", title: "keep-alive small requests (wrk -t1 -c64, 64 B body)",
			metrics: []metricInfo{{"rps", "requests/s", true}, {"p99_ms", "p99 ms", false}, {"req_per_cpu_s", "requests per CPU-s", true}},
			applies: all, checkListener: "tls", diag: diagMetrics("requests"),
			run: func(r *runner, p *peer) (metrics, error) {
				return r.wrkCPU(p, "-c64", fmt.Sprintf("https://127.0.0.1:%d/", p.data(r).TLS))
			},
		},
		{
			id: "S2", title: "bulk (wrk -t1 -c8, 1 MiB body)",
			metrics: []metricInfo{{"mib_s", "MiB/s", true}, {"cpu_s_per_gib", "CPU-s per GiB", false}},
			applies: all, checkListener: "tls",
			run: func(r *runner, p *peer) (metrics, error) {
				return r.wrkCPU(p, "-c8", fmt.Sprintf("https://127.0.0.1:%d/1m", p.data(r).TLS))
			},
		},
		{
			id: "S3", title: "a full TLS handshake per request (Connection: close, no resumption)",
			metrics: []metricInfo{{"rps", "connections/s", true}, {"req_per_cpu_s", "handshakes per CPU-s", true}},
			applies: all, diag: diagMetrics("requests"),
			run: func(r *runner, p *peer) (metrics, error) {
				return r.wrkCPU(p, "-c64", "-H", "Connection: close", fmt.Sprintf("https://127.0.0.1:%d/", p.data(r).TLS))
			},
		},
		{
			id: "S3r", title: "a resumed TLS handshake per request (Connection: close, session tickets; loadgen -mode conn -resume)",
			metrics: []metricInfo{{"rps", "connections/s", true}, {"req_per_cpu_s", "resumed handshakes per CPU-s", true}},
			extra:   []metricInfo{{"resumed", "fraction of handshakes resumed", true}, {"cpu_busy", "terminator CPU-s per second", false}, {"p99_ms", "p99 ms (connect to EOF)", false}},
			applies: all, diag: diagMetrics("requests"),
			run: func(r *runner, p *peer) (metrics, error) { return r.resumedConns(p) },
		},
		{
			id: "S4", title: "idle TLS connections held after the handshake",
			metrics: []metricInfo{{"kib_per_conn", "RSS KiB per idle connection", false}, {"kib_per_conn_open", "RSS KiB per connection right after opening", false}, {"failed", "failed connections", false}},
			applies: all, fresh: true,
			run: func(r *runner, p *peer) (metrics, error) { return r.hold(p, false) },
		},
		{
			id: "S4p", title: "idle plain TCP connections (the passthrough and plain data path)",
			metrics: []metricInfo{{"kib_per_conn", "RSS KiB per idle connection", false}, {"kib_per_conn_open", "RSS KiB per connection right after opening", false}, {"failed", "failed connections", false}},
			applies: plain, fresh: true,
			run: func(r *runner, p *peer) (metrics, error) { return r.hold(p, true) },
		},
		{
			id: "S5", title: "long-lived wss:// connections, a fraction echoing",
			metrics: echoMetrics, diag: diagMetrics("echoes"),
			applies: all, fresh: true,
			run: func(r *runner, p *peer) (metrics, error) {
				return r.websocket(p, r.busyLoad())
			},
			direct:     func(r *runner) (metrics, error) { return r.websocketDirect(r.busyLoad()) },
			directOnce: true,
		},
		{
			id: "S5s", title: fmt.Sprintf("long-lived wss:// connections, every one echoing once every %v", wsQuiet),
			metrics: echoMetrics, diag: diagMetrics("echoes"),
			applies: all, fresh: true,
			run: func(r *runner, p *peer) (metrics, error) {
				// At least two messages on every connection: the first
				// sends are spread over the first interval.
				return r.websocket(p, r.quietLoad())
			},
			direct:     func(r *runner) (metrics, error) { return r.websocketDirect(r.quietLoad()) },
			directOnce: true,
		},
		{
			id: "S6a", title: "plain TCP proxying, 1 MiB bodies (vs direct to the backend)",
			metrics: []metricInfo{{"mib_s", "MiB/s", true}, {"pct_direct", "% of direct (paired runs)", true}, {"cpu_s_per_gib", "CPU-s per GiB", false}},
			applies: plain,
			run: func(r *runner, p *peer) (metrics, error) {
				return r.wrkCPU(p, "-c8", fmt.Sprintf("http://127.0.0.1:%d/1m", p.data(r).Plain))
			},
			direct: func(r *runner) (metrics, error) {
				return r.wrkCPU(nil, "-c8", fmt.Sprintf("http://127.0.0.1:%d/1m", r.base.BackendHTTP))
			},
		},
		{
			id: "S6b", title: "TLS passthrough to a TLS backend (sluice: a passthrough route; the peers: plain TCP), 1 MiB bodies (vs direct)",
			metrics: []metricInfo{{"mib_s", "MiB/s", true}, {"pct_direct", "% of direct (paired runs)", true}, {"cpu_s_per_gib", "CPU-s per GiB", false}},
			applies: plain,
			run: func(r *runner, p *peer) (metrics, error) {
				return r.wrkCPU(p, "-c8", fmt.Sprintf("https://127.0.0.1:%d/1m", p.data(r).Pass))
			},
			direct: func(r *runner) (metrics, error) {
				return r.wrkCPU(nil, "-c8", fmt.Sprintf("https://127.0.0.1:%d/1m", r.base.BackendTLS))
			},
		},
		{
			id: "S7", title: "reconnect storm: all but a few wss:// connections closed and reopened at once, full handshakes, then resumed",
			metrics: stormHeadline, extra: stormExtra,
			applies: all, fresh: true, eachRun: true, repsFactor: 2,
			run: func(r *runner, p *peer) (metrics, error) { return r.storm(p) },
		},
	}
}

// wrkCPU runs wrk (pinned to the load CPU) against url and measures the
// peer's CPU time over the run. p is nil for direct runs.
func (r *runner) wrkCPU(p *peer, args ...string) (metrics, error) {
	var pb *probe
	if p != nil {
		pb = r.startProbe(p)
	}
	argv := append([]string{"taskset", "-c", r.loadCPU, "wrk", "-t1", fmt.Sprintf("-d%ds", int(r.duration.Seconds())),
		"--timeout", "5s", "-s", r.wrkScript}, args...)
	out, err := runOutput(argv...)
	if err != nil {
		return nil, fmt.Errorf("wrk: %w: %s", err, out)
	}
	var w struct {
		Requests      float64 `json:"requests"`
		DurationUS    float64 `json:"duration_us"`
		Bytes         float64 `json:"bytes"`
		Errors        float64 `json:"errors"`
		ConnectErrors float64 `json:"connect_errors"`
		ReadErrors    float64 `json:"read_errors"`
		WriteErrors   float64 `json:"write_errors"`
		ReqBytes      float64 `json:"req_bytes"`
		Probes        float64 `json:"probes"`
		P50US         float64 `json:"p50_us"`
		P99US         float64 `json:"p99_us"`
	}
	w.Probes = -1 // not reported (an older report.lua): no check
	if err := parseTagged(out, "WRKJSON", &w); err != nil {
		return nil, err
	}
	// wrk counts non-2xx answers and socket errors; a run with more than a
	// few measured error pages, not the terminator.
	if w.Errors > w.Requests/100 {
		return nil, fmt.Errorf("wrk: %.0f errors in %.0f requests (non-2xx answers or socket errors): %s", w.Errors, w.Requests, out)
	}
	secs := w.DurationUS / 1e6
	m := metrics{
		"rps":    w.Requests / secs,
		"p50_ms": w.P50US / 1000,
		"p99_ms": w.P99US / 1000,
		"mib_s":  w.Bytes / secs / (1 << 20),
		"errors": w.Errors,
	}
	// wrk's totals, for checking sluice+metrics' counters (measure).
	conns, _ := wrkConns(args)
	maps.Copy(m, wrkTotals{
		conns: conns, probes: w.Probes, requests: w.Requests, bytes: w.Bytes, reqBytes: w.ReqBytes,
		connectErrors: w.ConnectErrors, readErrors: w.ReadErrors, writeErrors: w.WriteErrors,
	}.metrics())
	if p != nil {
		used, diag := pb.finish(r, p, w.Requests)
		if cpu := used.cpuSeconds(); cpu > 0 {
			m["cpu_s"] = cpu
			m["req_per_cpu_s"] = w.Requests / cpu
			m["cpu_s_per_gib"] = cpu / (w.Bytes / (1 << 30))
		}
		maps.Copy(m, diag)
	}
	return m, nil
}

// wrkConns is the -cN among wrk's arguments: the connections it opens.
func wrkConns(args []string) (float64, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-c"); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return float64(n), true
			}
		}
	}
	return 0, false
}

// loadgen starts bench/loadgen pinned to the load CPU, with pipes for the
// READY/GO/RESULT protocol.
type loadgenRun struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
}

func (r *runner) loadgen(args ...string) (*loadgenRun, error) {
	argv := append([]string{"-c", r.loadCPU, r.loadgenBin}, args...)
	cmd := exec.Command("taskset", argv...)
	cmd.Stderr = r.progress
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start loadgen: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &loadgenRun{cmd: cmd, in: in, lines: sc}, nil
}

// expect reads lines until one starts with tag and decodes its JSON.
func (l *loadgenRun) expect(tag string, v any) error {
	for l.lines.Scan() {
		if line, ok := strings.CutPrefix(l.lines.Text(), tag+" "); ok {
			return json.Unmarshal([]byte(line), v)
		}
	}
	return fmt.Errorf("loadgen ended before %s: %v", tag, l.lines.Err())
}

// next reads lines until one starts with one of tags, and returns that
// tag and the line's JSON.
func (l *loadgenRun) next(tags ...string) (string, []byte, error) {
	for l.lines.Scan() {
		tag, js, _ := strings.Cut(l.lines.Text(), " ")
		if slices.Contains(tags, tag) {
			return tag, []byte(js), nil
		}
	}
	return "", nil, fmt.Errorf("loadgen ended before any of %s: %v", strings.Join(tags, ", "), l.lines.Err())
}

// send writes one line to loadgen's stdin.
func (l *loadgenRun) send(line string) error {
	if _, err := io.WriteString(l.in, line+"\n"); err != nil {
		return fmt.Errorf("write %q to loadgen: %w", line, err)
	}
	return nil
}

func (l *loadgenRun) finish() {
	l.in.Close()
	done := make(chan struct{})
	go func() {
		l.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		l.cmd.Process.Kill()
		<-done
	}
}

// hold is S4 (S4p with plain): N idle TLS (plain TCP) connections, RSS
// per connection.
func (r *runner) hold(p *peer, plain bool) (metrics, error) {
	before := p.rss()
	port := p.data(r).TLS
	args := []string{"-mode", "hold", "-conns", fmt.Sprint(r.conns), "-timeout", "120s", "-src", r.srcRange}
	if plain {
		port = p.data(r).Plain
		args = append(args, "-plain")
	}
	args = append(args, "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	lg, err := r.loadgen(args...)
	if err != nil {
		return nil, err
	}
	defer lg.finish()
	var ready struct {
		Opened, Failed int
		OpenSeconds    float64 `json:"open_seconds"`
	}
	if err := lg.expect("READY", &ready); err != nil {
		return nil, err
	}
	// Give the terminator a moment to finish its side of the last
	// connections (the backend connect follows the handshake).
	settle(p)
	opened := p.rss()
	// Then the figure that matters for idle connections: after they have
	// been idle for a while, once what the opening burst used transiently
	// has been given back (or not).
	time.Sleep(r.idleWait)
	after := p.rss()
	m := metrics{"failed": float64(ready.Failed), "open_s": ready.OpenSeconds}
	if ready.Opened > 0 {
		m["kib_per_conn_open"] = float64(opened-before) / 1024 / float64(ready.Opened)
		m["kib_per_conn"] = float64(after-before) / 1024 / float64(ready.Opened)
	}
	return m, nil
}

// echoMetrics are S5's and S5s's.
var echoMetrics = []metricInfo{
	{"p50_ms", "echo p50 ms", false}, {"p99_ms", "echo p99 ms", false},
	{"cpu_ms_per_kmsg", "terminator CPU ms per 1,000 echoes", false},
	{"kib_per_conn", "RSS KiB per connection", false}, {"failed", "failed connections", false},
}

// busyLoad is S5's echo phase: a tenth of the connections echoing once a
// second.
func (r *runner) busyLoad() wsLoad { return wsLoad{active: 0.1, rate: 1, duration: r.wsDuration} }

// quietLoad is S5s's echo phase: every connection echoing once every
// wsQuiet, at least two messages on every connection (the first sends are
// spread over the first interval).
func (r *runner) quietLoad() wsLoad {
	return wsLoad{active: 1, rate: 1 / r.wsQuiet.Seconds(), duration: max(r.wsDuration, r.wsQuiet*5/2)}
}

// wsLoad is the echo phase of S5 and S5s: the fraction of the connections
// that echo, each at rate messages a second, for duration.
type wsLoad struct {
	active, rate float64
	duration     time.Duration
}

// websocket is S5 and S5s: N wss connections, some or all of them echoing.
func (r *runner) websocket(p *peer, load wsLoad) (metrics, error) {
	return r.echo(p, fmt.Sprintf("wss://127.0.0.1:%d/echo", p.data(r).WS), load)
}

// websocketDirect is S5 or S5s with no terminator: ws:// from the load
// generator straight to an echo backend of its own, which runs where the
// terminators do. Every message then crosses between the two CPUs as
// through a terminator, with none of a terminator's work: its tail is what
// this machine's cross-CPU wake-ups add to every terminator's.
func (r *runner) websocketDirect(load wsLoad) (metrics, error) {
	const addr = "127.0.0.1:19181"
	if err := waitFree(addr); err != nil {
		return nil, fmt.Errorf("direct echo backend: %w", err)
	}
	b, err := r.procs.start(r.dir, "backend-ws-direct", r.termCPU, []string{"GOMAXPROCS=1"}, r.sluiceBin, "demo-backend", "-listen", addr)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := waitPort(ctx, addr); err != nil {
		return nil, fmt.Errorf("direct echo backend: %w", err)
	}
	return r.echo(nil, "ws://"+addr+"/echo", load)
}

// echo opens N WebSocket connections to url, some or all of them echoing
// by load, and measures the echoes, and p's memory per connection (p nil:
// none, a direct run).
func (r *runner) echo(p *peer, url string, load wsLoad) (metrics, error) {
	var before int64
	if p != nil {
		before = p.rss()
	}
	lg, err := r.loadgen("-mode", "ws", "-url", url,
		"-conns", fmt.Sprint(r.conns), "-active", fmt.Sprint(load.active), "-rate", fmt.Sprint(load.rate),
		"-duration", load.duration.String(), "-timeout", max(180*time.Second, load.duration+120*time.Second).String(),
		"-src", r.srcRange)
	if err != nil {
		return nil, err
	}
	defer lg.finish()
	var ready struct {
		Opened, Failed int
	}
	if err := lg.expect("READY", &ready); err != nil {
		return nil, err
	}
	var after int64
	var pb *probe
	if p != nil {
		settle(p)
		after = p.rss()
		pb = r.startProbe(p)
	}
	if _, err := io.WriteString(lg.in, "GO\n"); err != nil {
		return nil, err
	}
	var res struct {
		Messages, Errors int
		Dropped          int     `json:"dropped_conns"`
		P50              float64 `json:"p50_ms"`
		P99              float64 `json:"p99_ms"`
	}
	if err := lg.expect("RESULT", &res); err != nil {
		return nil, err
	}
	m := metrics{
		"failed":   float64(ready.Failed + res.Dropped),
		"p50_ms":   res.P50,
		"p99_ms":   res.P99,
		"messages": float64(res.Messages),
		"errors":   float64(res.Errors),
	}
	if p != nil && ready.Opened > 0 {
		m["kib_per_conn"] = float64(after-before) / 1024 / float64(ready.Opened)
	}
	// The echo phase's CPU and what it went to, read as loadgen reports:
	// the connections' closing comes after.
	if p != nil && res.Messages > 0 {
		used, diag := pb.finish(r, p, float64(res.Messages))
		m["cpu_ms_per_kmsg"] = used.cpuSeconds() * 1000 / (float64(res.Messages) / 1000)
		maps.Copy(m, diag)
	}
	return m, nil
}

// settle waits until the peer's RSS stops growing (at most 3 s), so the
// measurement includes the connections' backend sides.
func settle(p *peer) {
	prev := p.rss()
	for range 30 {
		time.Sleep(100 * time.Millisecond)
		cur := p.rss()
		if cur <= prev {
			return
		}
		prev = cur
	}
}

// runOutput runs argv and returns its combined output.
func runOutput(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// parseTagged finds "TAG {json}" in out and decodes it.
func parseTagged(out, tag string, v any) error {
	for _, line := range strings.Split(out, "\n") {
		if j, ok := strings.CutPrefix(line, tag+" "); ok {
			return json.Unmarshal([]byte(j), v)
		}
	}
	return fmt.Errorf("no %s line in: %s", tag, out)
}
