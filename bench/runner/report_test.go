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
	res := &results{
		started: time.Now(), finished: time.Now(), reps: 1, conns: 10, requested: 10,
		peers:     []string{"sluice", "nginx"},
		variants:  map[string]string{},
		scenarios: []*scenario{sc},
		samples: map[string]map[string][]metrics{"SX": {
			"sluice": {{"rps": 200, "resumed": 0.99}},
			"nginx":  {{"rps": 100, "resumed": 0.98}},
		}},
	}
	dir := t.TempDir()
	if err := res.write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "latest.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| connections/s | 200.0 | 100.0 | 2.00× (nginx) | 2.00× |\n",
		"| fraction resumed | 0.99 | 0.98 | | |\n",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("latest.md lacks %q:\n%s", want, md)
		}
	}
	svg, err := os.ReadFile(filepath.Join(dir, "latest.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(svg), "SX connections/s") || strings.Contains(string(svg), "fraction resumed") {
		t.Errorf("latest.svg: want a bar for the headline metric only:\n%s", svg)
	}
}
