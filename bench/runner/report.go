package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// results are every sample of a run, by scenario and peer.
type results struct {
	started, finished time.Time
	requested, conns  int
	reps              int
	duration          time.Duration
	machine           string
	versions          []string
	peers             []string
	variants          map[string]string // variant peer → the peer it is a variant of (sluice+metrics → sluice)
	notes             []string          // said under the header, e.g. a peer left out
	scenarios         []*scenario
	samples           map[string]map[string][]metrics // scenario → peer → runs
}

// others are the peers sluice is compared with: neither sluice nor a
// variant of a peer.
func (res *results) others() []string {
	var o []string
	for _, p := range res.peers {
		if _, variant := res.variants[p]; p != "sluice" && !variant {
			o = append(o, p)
		}
	}
	return o
}

// values of one metric over a peer's runs, sorted; nil when absent.
func (res *results) values(sc, peer, key string) []float64 {
	var v []float64
	for _, m := range res.samples[sc][peer] {
		if x, ok := m[key]; ok {
			v = append(v, x)
		}
	}
	slices.Sort(v)
	return v
}

// median of one metric over a peer's runs; NaN when absent.
func (res *results) median(sc, peer, key string) float64 {
	v := res.values(sc, peer, key)
	if len(v) == 0 {
		return math.NaN()
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// spread is the lowest and highest value of one metric over a peer's runs;
// NaN when absent.
func (res *results) spread(sc, peer, key string) (lo, hi float64) {
	v := res.values(sc, peer, key)
	if len(v) == 0 {
		return math.NaN(), math.NaN()
	}
	return v[0], v[len(v)-1]
}

// advantage is how many times better sluice is than other on a metric:
// above 1 sluice is better, below 1 worse, whichever way the metric runs.
func advantage(mi metricInfo, sluice, other float64) float64 {
	if math.IsNaN(sluice) || math.IsNaN(other) {
		return math.NaN()
	}
	if mi.higher {
		if other == 0 {
			return math.NaN()
		}
		return sluice / other
	}
	if sluice == 0 {
		if other == 0 {
			return 1
		}
		return math.NaN()
	}
	return other / sluice
}

// best is the best peer (not sluice, not direct) on a metric.
func (res *results) best(sc string, mi metricInfo) (string, float64) {
	name, val := "", math.NaN()
	for _, p := range res.others() {
		v := res.median(sc, p, mi.key)
		if math.IsNaN(v) {
			continue
		}
		if name == "" || (mi.higher && v > val) || (!mi.higher && v < val) {
			name, val = p, v
		}
	}
	return name, val
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", v)
}

// write renders latest.md and latest.svg into dir.
func (res *results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmark results\n\n")
	fmt.Fprintf(&b, "Run %s, %s in all. Reproduce with `make bench` (see bench/README.md).\n\n",
		res.started.UTC().Format("2006-01-02 15:04 MST"), res.finished.Sub(res.started).Round(time.Second))
	fmt.Fprintf(&b, "- Machine: %s\n", res.machine)
	for _, v := range res.versions {
		fmt.Fprintf(&b, "- %s\n", v)
	}
	fmt.Fprintf(&b, "- Each value is the median of %d runs%s, the terminators interleaved; wrk runs last %s.\n", res.reps, moreReps(res), res.duration)
	fmt.Fprintf(&b, "- Terminators pinned to CPU 0 with one worker/thread each (sluice: GOMAXPROCS=1); wrk, the load generator and the backends on CPU 1. The Go programs (sluice, tlsbare, tlsproxy) run with GODEBUG=gctrace=1, a line per collection, for the GC figures under S1, S3, S3r and S7.\n")
	conns := fmt.Sprint(res.conns)
	if res.conns < res.requested {
		conns = fmt.Sprintf("%d (asked for %d; capped by this machine's hard open-files limit, two descriptors per proxied connection)", res.conns, res.requested)
	}
	fmt.Fprintf(&b, "- S4, S5, S5s and S7 connections: %s.\n", conns)
	if ids := res.scenariosOf(barePeer); len(ids) > 0 {
		fmt.Fprintf(&b, "- %s is a bare crypto/tls server with sluice's TLS settings that answers from memory (bench/tlsbare), GOMAXPROCS=1 on the same CPU; it ran in %s only, as a reference beside sluice (the ratio under those tables), not as a peer.\n",
			barePeer, strings.Join(ids, ", "))
	}
	if ids := res.scenariosOf(proxyPeer); len(ids) > 0 {
		fmt.Fprintf(&b, "- %s is the same program proxying to the backend (bench/tlsbare -backend): after the handshake it dials the backend, copies each way on a goroutine of its own, and closes both connections when either direction ends, with no half-close, PROXY header, limits, logs or parking; it ran in %s only, as a reference beside sluice, not as a peer.\n",
			proxyPeer, strings.Join(ids, ", "))
	}
	if ids := res.scenariosOf(metricsPeer); len(ids) > 0 {
		fmt.Fprintf(&b, "- %s is sluice with the same configuration plus the `[admin]` listener, whose `/metrics` the runner GETs once a second during each of its runs; it ran in %s only and is compared with sluice alone (under those tables), not counted as a peer.\n",
			metricsPeer, strings.Join(ids, ", "))
	}
	for _, n := range res.notes {
		fmt.Fprintf(&b, "- **Note:** %s\n", n)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "**Ratios** are sluice's advantage: above 1× sluice is better than that peer, below 1× worse, whichever way the metric runs (for latency, memory and CPU per unit, the peer's value divided by sluice's).\n\n")

	for _, sc := range res.scenarios {
		fmt.Fprintf(&b, "## %s: %s\n\n", sc.id, sc.title)
		others := res.others()
		var cols []string
		for _, p := range res.peers {
			// A variant has a column only where it ran.
			if _, variant := res.variants[p]; !variant || len(res.samples[sc.id][p]) > 0 {
				cols = append(cols, p)
			}
		}
		if _, ok := res.samples[sc.id]["direct"]; ok {
			cols = append(cols, "direct")
		}
		fmt.Fprintf(&b, "| metric | %s | sluice vs best peer |", strings.Join(cols, " | "))
		for _, p := range others {
			fmt.Fprintf(&b, " vs %s |", p)
		}
		b.WriteString("\n|---|")
		for range cols {
			b.WriteString("---:|")
		}
		b.WriteString("---:|")
		for range others {
			b.WriteString("---:|")
		}
		b.WriteString("\n")
		for _, mi := range sc.metrics {
			fmt.Fprintf(&b, "| %s |", mi.label)
			for _, p := range cols {
				fmt.Fprintf(&b, " %s |", fmtNum(res.median(sc.id, p, mi.key)))
			}
			s := res.median(sc.id, "sluice", mi.key)
			bestName, bestVal := res.best(sc.id, mi)
			fmt.Fprintf(&b, " %s (%s) |", fmtRatio(advantage(mi, s, bestVal)), bestName)
			for _, p := range others {
				fmt.Fprintf(&b, " %s |", fmtRatio(advantage(mi, s, res.median(sc.id, p, mi.key))))
			}
			b.WriteString("\n")
		}
		// Extra rows, without ratios: they check a run or explain a
		// headline figure, and a ratio of them would read as a result.
		for _, mi := range sc.extra {
			fmt.Fprintf(&b, "| %s |", mi.label)
			for _, p := range cols {
				fmt.Fprintf(&b, " %s |", fmtNum(res.median(sc.id, p, mi.key)))
			}
			b.WriteString(" |")
			for range others {
				b.WriteString(" |")
			}
			b.WriteString("\n")
		}
		for _, v := range res.peers {
			if base, ok := res.variants[v]; ok {
				b.WriteString(res.variantLine(sc, v, base))
				if runs := res.samples[sc.id][v]; v == metricsPeer && len(runs) > 0 {
					b.WriteString(checkLines(sc, runs))
				}
			}
		}
		if _, ok := res.samples[sc.id]["direct"]; ok && sc.directOnce {
			lo, hi := res.spread(sc.id, "direct", "p99_ms")
			fmt.Fprintf(&b, "\ndirect is the same echo with no terminator: ws:// from the load generator to an echo backend of its own on the terminators' CPU, once per repetition, so each message crosses between the CPUs as it does through a terminator, with none of a terminator's work. Its echo p99, %s ms (%s to %s over its runs), is what this machine's cross-CPU wake-ups alone give; sluice's is %s ms.\n",
				fmtNum(res.median(sc.id, "direct", "p99_ms")), fmtNum(lo), fmtNum(hi), fmtNum(res.median(sc.id, "sluice", "p99_ms")))
			var spreads []string
			for _, p := range cols {
				lo, hi := res.spread(sc.id, p, "p99_ms")
				spreads = append(spreads, fmt.Sprintf("%s %s to %s", p, fmtNum(lo), fmtNum(hi)))
			}
			fmt.Fprintf(&b, "Echo p99 over the runs, lowest to highest: %s ms.\n", strings.Join(spreads, ", "))
		} else if ok {
			lo, hi := res.spread(sc.id, "sluice", "pct_direct")
			fmt.Fprintf(&b, "\nsluice reaches %s of the direct throughput (median of its runs, each divided by the direct run just before it; %s to %s).\n",
				fmtPct(res.median(sc.id, "sluice", "pct_direct")/100), fmtPct(lo/100), fmtPct(hi/100))
		}
		b.WriteString(res.pairedLines(sc))
		if sc.eachRun || len(sc.diag) > 0 {
			b.WriteString(res.eachRunLines(sc, cols))
		}
		b.WriteString(res.clientBoundLine(sc, cols))
		b.WriteString("\n")
	}
	b.WriteString("![sluice's advantage over each peer](latest.svg)\n")
	if err := os.WriteFile(filepath.Join(dir, "latest.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "latest.svg"), []byte(res.chart()), 0o644)
}

// pairedLines compare sluice with each peer repetition by repetition:
// the median of the ratios of runs made minutes apart at most, in an
// order that rotates, and how often sluice was no worse. The table's ratio
// of medians can turn on one slow run of either, when the machine's speed
// drifts more within a repetition than the terminators differ, and the
// best peer by medians need not be the one sluice trails most often.
func (res *results) pairedLines(sc *scenario) string {
	var b strings.Builder
	for _, mi := range sc.metrics {
		var parts []string
		for _, p := range res.others() {
			if med, noWorse, n := res.paired(sc.id, p, mi); n >= 2 {
				parts = append(parts, fmt.Sprintf("%s %s (no worse in %d of %d)", p, fmtRatio(med), noWorse, n))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, "- %s: %s\n", mi.label, strings.Join(parts, ", "))
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "\nRepetition by repetition (the runs of one repetition are minutes apart at most, in an order that rotates), sluice against each peer: the median of the per-repetition ratios, and in how many repetitions sluice was no worse:\n\n" + b.String()
}

// paired is the median of sluice's advantage over peer in each repetition
// both ran, how many of those advantages are at least 1, and how many
// there are.
func (res *results) paired(sc, peer string, mi metricInfo) (med float64, noWorse, n int) {
	xs, ys := res.samples[sc]["sluice"], res.samples[sc][peer]
	var rs []float64
	for i := range min(len(xs), len(ys)) {
		x, okx := xs[i][mi.key]
		y, oky := ys[i][mi.key]
		if r := advantage(mi, x, y); okx && oky && !math.IsNaN(r) {
			rs = append(rs, r)
			if r >= 1 {
				noWorse++
			}
		}
	}
	if len(rs) == 0 {
		return math.NaN(), 0, 0
	}
	slices.Sort(rs)
	med = rs[len(rs)/2]
	if len(rs)%2 == 0 {
		med = (rs[len(rs)/2-1] + med) / 2
	}
	return med, noWorse, len(rs)
}

// clientBound is the load CPU's busy fraction from which a storm is
// taken to run at its client's pace.
const clientBound = 0.95

// clientBoundLine says so when every peer's storms kept the load CPU (the
// storm's client, the stayers and the backend) busy at least clientBound
// in the median, and no terminator's CPU was: then how soon all are back
// measures the client, and the terminators differ in the CPU they spent
// meanwhile.
func (res *results) clientBoundLine(sc *scenario, cols []string) string {
	var storms []string
	for _, mi := range sc.extra {
		name, ok := strings.CutSuffix(mi.key, "_load_busy")
		if !ok {
			continue
		}
		load, term, n := math.Inf(1), 0.0, 0
		for _, p := range cols {
			l, t := res.median(sc.id, p, mi.key), res.median(sc.id, p, name+"_term_busy")
			if math.IsNaN(l) || math.IsNaN(t) {
				continue
			}
			load, term, n = min(load, l), max(term, t), n+1
		}
		if n == 0 || load < clientBound || term >= clientBound {
			return ""
		}
		storms = append(storms, fmt.Sprintf("%s storm: load CPU at least %s, terminators at most %s", name, fmtPct(load), fmtPct(term)))
	}
	if len(storms) == 0 {
		return ""
	}
	return fmt.Sprintf("\nThe load CPU (the storm's client, the stayers and the backend) was busy through every storm, whichever the terminator, and no terminator's CPU was (medians; %s): how soon all are back is the client's pace on this machine, not the terminator's, and the terminators differ in the CPU-s they spent meanwhile.\n",
		strings.Join(storms, "; "))
}

// eachRunLines gives each headline metric's values run by run, in the
// order the runs were made, for every peer with runs of it, and then the
// diagnostic ones.
func (res *results) eachRunLines(sc *scenario, cols []string) string {
	var b strings.Builder
	b.WriteString("\nEach run, in the order they ran:\n\n")
	for _, mi := range slices.Concat(sc.metrics, sc.diag) {
		var per []string
		for _, p := range cols {
			var v []string
			for _, m := range res.samples[sc.id][p] {
				if x, ok := m[mi.key]; ok {
					v = append(v, fmtNum(x))
				}
			}
			if len(v) > 0 {
				per = append(per, fmt.Sprintf("%s %s", p, strings.Join(v, ", ")))
			}
		}
		if len(per) > 0 {
			fmt.Fprintf(&b, "- %s: %s\n", mi.label, strings.Join(per, "; "))
		}
	}
	return b.String()
}

// scenariosOf are the ids of the scenarios a peer ran in.
func (res *results) scenariosOf(peer string) []string {
	var ids []string
	for _, sc := range res.scenarios {
		if len(res.samples[sc.id][peer]) > 0 {
			ids = append(ids, sc.id)
		}
	}
	return ids
}

// variantLine compares a variant with its base peer in one scenario (for
// sluice+metrics: what metrics cost), as plain ratios variant / base of
// the medians, the CPU-efficiency metric first, with that metric's ratio
// in each repetition (the two ran in the same rotation). Empty when either
// did not run.
func (res *results) variantLine(sc *scenario, variant, base string) string {
	vs, bs := res.samples[sc.id][variant], res.samples[sc.id][base]
	if len(vs) == 0 || len(bs) == 0 {
		return ""
	}
	ms := slices.Clone(sc.metrics)
	slices.SortStableFunc(ms, func(a, b metricInfo) int {
		cpu := func(m metricInfo) int {
			if m.key == "req_per_cpu_s" || m.key == "cpu_s_per_gib" {
				return 0
			}
			return 1
		}
		return cpu(a) - cpu(b)
	})
	ratio := func(key string) float64 {
		v, b := res.median(sc.id, variant, key), res.median(sc.id, base, key)
		if b == 0 {
			return math.NaN()
		}
		return v / b
	}
	var w strings.Builder
	what := "cost"
	switch variant {
	case metricsPeer:
		what = "metrics cost"
	case barePeer:
		what = "crypto/tls alone (bench/tlsbare: no backend, answers from memory), the most sluice could do in Go,"
	case proxyPeer:
		what = "the least TLS proxy in Go (bench/tlsbare -backend: crypto/tls, net and an io.Copy per direction, nothing else),"
	}
	lead := ms[0]
	// Three decimals: the goal is a matter of a percent or two.
	r3 := func(v float64) string {
		if math.IsNaN(v) {
			return "n/a"
		}
		return fmt.Sprintf("%.3f×", v)
	}
	fmt.Fprintf(&w, "\n%s in %s: %s / %s %s = **%s**", what, sc.id, variant, base, lead.label, r3(ratio(lead.key)))
	var per []string
	for i := range min(len(vs), len(bs)) {
		x, okv := vs[i][lead.key]
		y, okb := bs[i][lead.key]
		if okv && okb && y != 0 {
			per = append(per, r3(x/y))
		}
	}
	runs := fmt.Sprintf("%d runs each", len(vs))
	if len(vs) != len(bs) {
		runs = fmt.Sprintf("%d and %d runs", len(vs), len(bs))
	}
	fmt.Fprintf(&w, " (medians of %s; per repetition: %s", runs, strings.Join(per, ", "))
	if variant == metricsPeer && lead.key == "req_per_cpu_s" {
		w.WriteString("; goal: within 2%, at least 0.98×")
	}
	w.WriteString(")")
	for _, mi := range ms[1:] {
		fmt.Fprintf(&w, "; %s %s", mi.label, fmtRatio(ratio(mi.key)))
	}
	w.WriteString(".")
	if n := res.median(sc.id, variant, "scrapes"); !math.IsNaN(n) {
		lo, _ := res.spread(sc.id, variant, "scrapes")
		_, slow := res.spread(sc.id, variant, "scrape_ms_max")
		fmt.Fprintf(&w, " Its /metrics was scraped once a second during each run, at least %.0f times per run (%s KiB each, the slowest scrape %s ms), every scrape parsed with Prometheus' text parser (expfmt), none failing.",
			lo, fmtNum(res.median(sc.id, variant, "scrape_kib")), fmtNum(slow))
	}
	w.WriteString("\n")
	return w.String()
}

// checkLines say, one line per run, how sluice+metrics' counters compared
// with what wrk did (metricscheck.go), under the metrics-cost line; every
// run's check passed, or the benchmark would have stopped.
func checkLines(sc *scenario, runs []metrics) string {
	if sc.checkListener == "" {
		return fmt.Sprintf("\nIn %s the metrics were not checked against the load generator (only keep-alive wrk scenarios over the TLS listener are: S1, S2).\n", sc.id)
	}
	var w strings.Builder
	fmt.Fprintf(&w, "\nMetrics checked against wrk, listener %q, from a scrape right before wrk started to one once its connections had closed. Exact, with no socket errors: accepted = wrk's -c plus its start-up probe (a TCP connect it closes before the run, a failed handshake to sluice), TLS handshakes = -c, handshakes + failures = closed = accepted, received bytes a whole number of wrk's (identical) requests, from those it got answers to up to one more per connection; approximate: sent bytes at least what wrk read and at most one response per connection more:\n\n", sc.checkListener)
	for i, m := range runs {
		if c, ok := checkOf(m); ok {
			fmt.Fprintf(&w, "- run %d: %s.\n", i+1, c.line())
		} else {
			fmt.Fprintf(&w, "- run %d: not checked.\n", i+1)
		}
	}
	return w.String()
}

func fmtPct(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.0f%%", v*100)
}

// chart draws one group of bars per headline metric: sluice's advantage
// over each peer, on a log scale with 1× marked.
func (res *results) chart() string {
	type bar struct {
		peer  string
		ratio float64
	}
	type group struct {
		label string
		bars  []bar
	}
	var groups []group
	others := res.others()
	for _, sc := range res.scenarios {
		for _, mi := range sc.metrics {
			if mi.key == "failed" || strings.HasSuffix(mi.key, "_failed") {
				continue
			}
			g := group{label: sc.id + " " + mi.label}
			s := res.median(sc.id, "sluice", mi.key)
			for _, p := range others {
				g.bars = append(g.bars, bar{p, advantage(mi, s, res.median(sc.id, p, mi.key))})
			}
			groups = append(groups, g)
		}
	}
	colors := []string{"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1"}
	const (
		left, top, rowH, barH, width = 230, 50, 14, 12, 900
		lo, hi                       = -2.0, 2.0 // log2 range: 0.25× to 4×
	)
	height := top + len(groups)*(len(others)*rowH+10) + 40
	plotW := float64(width - left - 30)
	x := func(r float64) float64 {
		l := math.Log2(r)
		l = math.Max(lo, math.Min(hi, l))
		return float64(left) + (l-lo)/(hi-lo)*plotW
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">sluice's advantage over each peer (above 1× = sluice better; log scale)</text>`+"\n", 10)
	for i, p := range others {
		fmt.Fprintf(&b, `<rect x="%d" y="28" width="10" height="10" fill="%s"/><text x="%d" y="37">%s</text>`+"\n", left+i*110, colors[i%len(colors)], left+i*110+14, html.EscapeString(p))
	}
	for _, t := range []float64{0.25, 0.5, 1, 2, 4} {
		xx := x(t)
		stroke := "#ddd"
		if t == 1 {
			stroke = "#333"
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", xx, top, xx, height-30, stroke)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%g×</text>`+"\n", xx, height-15, t)
	}
	y := top
	for _, g := range groups {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+len(g.bars)*rowH/2+4, html.EscapeString(g.label))
		for i, br := range g.bars {
			if !math.IsNaN(br.ratio) {
				x0, x1 := x(1), x(br.ratio)
				if x1 < x0 {
					x0, x1 = x1, x0
				}
				fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, y, math.Max(x1-x0, 1), barH, colors[i%len(colors)])
				fmt.Fprintf(&b, `<text x="%.1f" y="%d">%.2f×</text>`+"\n", math.Max(x0, x1)+3, y+barH-2, br.ratio)
			}
			y += rowH
		}
		y += 10
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// machine describes the host for the report.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel := "unknown kernel"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d CPUs (%s), %s, %s", runtime.NumCPU(), model, kernel, runtime.Version())
}

func versions(sluice string) []string {
	return []string{
		"sluice: " + version(sluice, "-version"),
		"nginx: " + version("nginx", "-v"),
		"HAProxy: " + version("haproxy", "-v"),
		"hitch: " + version("hitch", "--version"),
		"wrk: " + version("wrk", "-v"),
	}
}

// moreReps names the scenarios of res that ran more often than -reps, as
// " (S7: 6)", or is empty.
func moreReps(res *results) string {
	var more []string
	for _, sc := range res.scenarios {
		if n := sc.reps(res.reps); n != res.reps {
			more = append(more, fmt.Sprintf("%s: %d", sc.id, n))
		}
	}
	if len(more) == 0 {
		return ""
	}
	return " (" + strings.Join(more, ", ") + ")"
}
