package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestStallLine(t *testing.T) {
	tl := []slotSummary{{0, 90, 12}, {0.25, 40, 1830}, {0.5, 0, 0}, {0.75, 85, 950}, {1, 97, 1830}}
	if got, want := stallLine(tl, 3), "1830 ms at 0.25 s, 1830 ms at 1 s, 950 ms at 0.75 s"; got != want {
		t.Errorf("stallLine = %q, want %q", got, want)
	}
	if got := stallLine(tl[:1], 4); got != "12 ms at 0 s" {
		t.Errorf("one slot: %q", got)
	}
	if tl[1].At != 0.25 {
		t.Errorf("stallLine sorted its argument: %+v", tl)
	}
	if got := stallLine(nil, 4); got != "" {
		t.Errorf("no slots: %q", got)
	}
}

// TestStormCPUGC checks that a storm of a Go peer records the collections
// its log gained during the storm, and that of another peer none.
func TestStormCPUGC(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "sluice-0.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := "gc 7 @1.0s 3%: 0.1+2+0.1 ms clock, 0.1+1.5/250/0.5+0.1 ms cpu, 80->82->70 MB, 87 MB goal, 0 MB stacks, 0 MB globals, 1 P\n"
	f.WriteString(line)
	for _, tc := range []struct {
		env  []string
		want bool
	}{{goEnv, true}, {nil, false}} {
		p := &peer{name: "x", env: tc.env, procs: []*proc{{cmd: cmd, log: f}}}
		sc := startStormCPU(p, "0")
		f.WriteString(line + line)
		sc.end(p, "0")
		m := metrics{}
		sc.record(m, "full")
		if got, ok := m["full_gcs"]; ok != tc.want || (ok && got != 2) {
			t.Errorf("env %v: full_gcs = %v (recorded %v), want 2 recorded %v", tc.env, got, ok, tc.want)
		}
		if _, ok := m["full_faults"]; !ok {
			t.Errorf("env %v: no full_faults recorded: %v", tc.env, m)
		}
		if got := m["full_gc_cpu_s"]; tc.want && math.Abs(got-2*0.2522) > 1e-9 {
			t.Errorf("full_gc_cpu_s = %v, want %v", got, 2*0.2522)
		}
	}
}
