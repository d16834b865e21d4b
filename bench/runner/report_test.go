package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReportExtraRows checks that a scenario's extra metrics get a row
// with every peer's value and no ratios, and no bar in the chart.
func TestReportExtraRows(t *testing.T) {
	sc := &scenario{
		id: "SX", title: "test",
		metrics: []metricInfo{{"rps", "connections/s", true}},
		extra:   []metricInfo{{"resumed", "fraction resumed", true}},
	}
	res := oneScenario(sc, 1, []string{"sluice", "nginx"}, map[string][]metrics{
		"sluice": {{"rps": 200, "resumed": 0.99}},
		"nginx":  {{"rps": 100, "resumed": 0.98}},
	})
	dir, md := writeReport(t, res)
	wantLines(t, md,
		"| connections/s | 200.0 | 100.0 | 2.00× (nginx) | 2.00× |\n",
		"| fraction resumed | 0.99 | 0.98 | | |\n")
	svg, err := os.ReadFile(filepath.Join(dir, "latest.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(svg), "SX connections/s") || strings.Contains(string(svg), "fraction resumed") {
		t.Errorf("latest.svg: want a bar for the headline metric only:\n%s", svg)
	}
}

// TestReportEchoFloor checks that an echo scenario with a direct run per
// repetition gets a direct column that no ratio counts as the best peer,
// and the line that sets every peer's p99 beside direct's.
func TestReportEchoFloor(t *testing.T) {
	sc := &scenario{id: "SX", title: "echo", metrics: echoMetrics, directOnce: true,
		direct: func(*runner) (metrics, error) { return nil, nil }}
	res := oneScenario(sc, 2, []string{"sluice", "haproxy"}, map[string][]metrics{
		"sluice":  {{"p99_ms": 4, "cpu_ms_per_kmsg": 100}, {"p99_ms": 6, "cpu_ms_per_kmsg": 120}},
		"haproxy": {{"p99_ms": 5, "cpu_ms_per_kmsg": 110}, {"p99_ms": 7, "cpu_ms_per_kmsg": 130}},
		"direct":  {{"p99_ms": 1}, {"p99_ms": 3}},
	})
	_, md := writeReport(t, res)
	for _, want := range []string{
		"| echo p99 ms | 5.00 | 6.00 | 2.00 | 1.20× (haproxy) | 1.20× |\n",
		"| terminator CPU ms per 1,000 echoes | 110.0 | 120.0 | n/a | 1.09× (haproxy) | 1.09× |\n",
		"Its echo p99, 2.00 ms (1.00 to 3.00 over its runs), is what this machine's cross-CPU wake-ups alone give; sluice's is 5.00 ms.\n",
		"Echo p99 over the runs, lowest to highest: sluice 4.00 to 6.00, haproxy 5.00 to 7.00, direct 1.00 to 3.00 ms.\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("latest.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "of the direct throughput") {
		t.Errorf("latest.md: a throughput line for an echo scenario:\n%s", md)
	}
}

// oneScenario is the results of one scenario's runs by the peers, in
// that order.
func oneScenario(sc *scenario, reps int, peers []string, runs map[string][]metrics) *results {
	return &results{
		started: time.Now(), finished: time.Now(), reps: reps, conns: 10, requested: 10,
		peers:     peers,
		variants:  map[string]string{},
		scenarios: []*scenario{sc},
		samples:   map[string]map[string][]metrics{sc.id: runs},
	}
}

// wantLines reports each of wants that latest.md (md) lacks.
func wantLines(t *testing.T, md string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(md, want) {
			t.Errorf("latest.md lacks %q:\n%s", want, md)
		}
	}
}

// writeReport writes res's report into a temporary directory and returns
// the directory and latest.md.
func writeReport(t *testing.T, res *results) (string, string) {
	t.Helper()
	dir := t.TempDir()
	if err := res.write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "latest.md"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, string(md)
}

// TestReportEachRun checks that a scenario marked eachRun lists every
// peer's headline values in the order of its runs, not sorted, and that
// others do not.
func TestReportEachRun(t *testing.T) {
	sc := &scenario{id: "SX", title: "storm", eachRun: true,
		metrics: []metricInfo{{"back_s", "seconds until all are back", false}},
		extra:   []metricInfo{{"cpu_s", "CPU-s", false}}}
	res := oneScenario(sc, 3, []string{"sluice", "nginx"}, map[string][]metrics{
		"sluice": {{"back_s": 14, "cpu_s": 1}, {"back_s": 9, "cpu_s": 2}, {"back_s": 12, "cpu_s": 3}},
		"nginx":  {{"back_s": 10, "cpu_s": 1}, {"back_s": 11, "cpu_s": 1}, {"back_s": 8, "cpu_s": 1}},
	})
	_, md := writeReport(t, res)
	want := "- seconds until all are back: sluice 14.0, 9.00, 12.0; nginx 10.0, 11.0, 8.00\n"
	if !strings.Contains(md, want) {
		t.Errorf("latest.md lacks %q:\n%s", want, md)
	}
	if strings.Contains(md, "- CPU-s:") {
		t.Errorf("latest.md lists an extra metric run by run:\n%s", md)
	}
	sc.eachRun = false
	if _, md := writeReport(t, res); strings.Contains(md, "Each run") {
		t.Errorf("latest.md lists runs of a scenario not marked eachRun:\n%s", md)
	}
	// Diagnostic figures are listed run by run, after the headline ones,
	// and stay out of the table.
	sc.diag = []metricInfo{{"cpu_s", "CPU-s", false}}
	_, md = writeReport(t, res)
	want += "- CPU-s: sluice 1.00, 2.00, 3.00; nginx 1.00, 1.00, 1.00\n"
	if !strings.Contains(md, want) {
		t.Errorf("latest.md lacks %q:\n%s", want, md)
	}
}

// TestReportMoreReps checks that the header says which scenarios ran
// more often than -reps, and says nothing when none did.
func TestReportMoreReps(t *testing.T) {
	sc := &scenario{id: "SX", title: "storm", repsFactor: 2,
		metrics: []metricInfo{{"back_s", "seconds until all are back", false}}}
	res := oneScenario(sc, 2, []string{"sluice"}, map[string][]metrics{
		"sluice": {{"back_s": 1}, {"back_s": 2}, {"back_s": 3}, {"back_s": 4}},
	})
	_, md := writeReport(t, res)
	wantLines(t, md, "- Each value is the median of 2 runs (SX: 4), the terminators")
	sc.repsFactor = 0
	_, md = writeReport(t, res)
	wantLines(t, md, "- Each value is the median of 2 runs, the terminators")
}

// TestReportPaired checks the repetition-by-repetition lines: each
// metric against each peer, ratios taken within a repetition.
func TestReportPaired(t *testing.T) {
	sc := &scenario{id: "SX", title: "echo",
		metrics: []metricInfo{{"p99_ms", "p99 ms", false}, {"rps", "requests/s", true}}}
	res := oneScenario(sc, 4, []string{"sluice", "nginx", "haproxy"}, map[string][]metrics{
		// sluice's median p99 (3.5) trails haproxy's (3), but within
		// repetitions it is no worse in three of four: haproxy's slow run
		// and sluice's are in different repetitions. nginx's median p99
		// is worse, yet it beats sluice in every repetition.
		"sluice":  {{"p99_ms": 2, "rps": 10}, {"p99_ms": 6, "rps": 10}, {"p99_ms": 3, "rps": 10}, {"p99_ms": 4, "rps": 10}},
		"nginx":   {{"p99_ms": 1.9, "rps": 12}, {"p99_ms": 5.8, "rps": 12}, {"p99_ms": 2.9, "rps": 8}, {"p99_ms": 3.9, "rps": 12}},
		"haproxy": {{"p99_ms": 2, "rps": 5}, {"p99_ms": 2, "rps": 5}, {"p99_ms": 4, "rps": 5}, {"p99_ms": 4, "rps": 5}},
	})
	_, md := writeReport(t, res)
	wantLines(t, md,
		"- p99 ms: nginx 0.97× (no worse in 0 of 4), haproxy 1.00× (no worse in 3 of 4)\n",
		"- requests/s: nginx 0.83× (no worse in 1 of 4), haproxy 2.00× (no worse in 4 of 4)\n")
	one := oneScenario(sc, 1, []string{"sluice", "nginx"}, map[string][]metrics{
		"sluice": {{"p99_ms": 2, "rps": 10}},
		"nginx":  {{"p99_ms": 3, "rps": 12}},
	})
	if _, md := writeReport(t, one); strings.Contains(md, "Repetition by repetition") {
		t.Errorf("paired lines from one repetition:\n%s", md)
	}
}

// TestReportClientBound checks the line that says a storm ran at its
// client's pace: there when every peer kept the load CPU busy and none
// was busy itself, absent when one peer's storm left the load CPU idle
// or a terminator was saturated.
func TestReportClientBound(t *testing.T) {
	sc := &scenario{id: "SX", title: "storm",
		metrics: []metricInfo{{"full_all_back_s", "full storm: seconds until all are back", false}},
		extra:   []metricInfo{{"full_term_busy", "terminator busy", false}, {"full_load_busy", "load busy", false}}}
	run := func(sluiceLoad, nginxTerm float64) string {
		res := oneScenario(sc, 1, []string{"sluice", "nginx"}, map[string][]metrics{
			"sluice": {{"full_all_back_s": 10, "full_term_busy": 0.7, "full_load_busy": sluiceLoad}},
			"nginx":  {{"full_all_back_s": 11, "full_term_busy": nginxTerm, "full_load_busy": 1}},
		})
		_, md := writeReport(t, res)
		return md
	}
	want := "(medians; full storm: load CPU at least 98%, terminators at most 70%): how soon all are back is the client's pace"
	if md := run(0.98, 0.6); !strings.Contains(md, want) {
		t.Errorf("latest.md lacks %q:\n%s", want, md)
	}
	if md := run(0.8, 0.6); strings.Contains(md, "client's pace") {
		t.Errorf("client-bound line with the load CPU 80%% busy in one peer's storm:\n%s", md)
	}
	if md := run(0.98, 0.97); strings.Contains(md, "client's pace") {
		t.Errorf("client-bound line with a terminator 97%% busy:\n%s", md)
	}
}
