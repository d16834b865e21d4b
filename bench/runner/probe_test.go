package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseCPULine checks that softirq counts as busy and steal apart
// from it (busy again for cpuTicks), that idle and iowait do not, that
// guest time (in user time already) is not added twice, and that a
// missing CPU or a bad field is an error.
func TestParseCPULine(t *testing.T) {
	stat := []byte("cpu  10 0 10 100 5 0 0 0 0 0\n" +
		"cpu0 4 1 6 50 2 3 7 11 5 0\n" +
		"intr 1 2 3\n")
	c, err := parseCPULine(stat, "0")
	if err != nil {
		t.Fatal(err)
	}
	if want := (cpuLine{busy: 21, softirq: 7, steal: 11, total: 84}); c != want {
		t.Errorf("cpu0 = %+v, want %+v", c, want)
	}
	if busy, total, _ := cpuTicks(stat, "0"); busy != 32 || total != 84 {
		t.Errorf("cpuTicks(cpu0) = %d of %d, want 32 of 84 (steal is busy there)", busy, total)
	}
	if _, err := parseCPULine([]byte("cpu0 1 x 3 4 5 6 7 8\n"), "0"); err == nil {
		t.Error("no error for a field that is not a number")
	}
	if _, _, err := cpuTicks(stat, "2"); err == nil {
		t.Error("cpu2: no error for a CPU /proc/stat lacks")
	}
}

// TestStatusCounts checks the context switch counts read from a thread's
// status file.
func TestStatusCounts(t *testing.T) {
	status := []byte("Name:\tsluice\nThreads:\t7\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n")
	if v, iv := statusCounts(status); v != 1234 || iv != 56 {
		t.Errorf("statusCounts = %d, %d, want 1234, 56", v, iv)
	}
}

// TestProbeLive reads a real process around a burst of work it does: its
// thread is found, it switched, and its CPU time has a kernel share.
func TestProbeLive(t *testing.T) {
	ps := &procs{}
	r := &runner{termCPU: "0", loadCPU: "0"}
	// The shell waits on a line from stdin, then forks 20 children to make
	// kernel work and context switches, then waits again.
	cmd := exec.Command("sh", "-c", "read a; i=0; while [ $i -lt 20 ]; do /bin/true; i=$((i+1)); done; echo done; read b")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr := &proc{name: "sh", cmd: cmd, owner: ps}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	p := &peer{name: "sh", procs: []*proc{pr}}
	pb := r.startProbe(p)
	if _, err := in.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil {
		t.Fatal(err)
	}
	_, m := pb.finish(r, p, 1000)
	if m["threads"] != 1 {
		t.Errorf("threads = %v, want 1 (the shell; its children have exited): %v", m["threads"], m)
	}
	if m["vcs_per_k"] < 20 {
		t.Errorf("voluntary context switches per 1,000 = %v, want at least the 20 waits for a child: %v", m["vcs_per_k"], m)
	}
	if _, ok := m["term_cpu_busy"]; !ok {
		t.Errorf("no terminator CPU figures: %v", m)
	}
}

// TestParseGCTrace checks the collections added up from gctrace's lines,
// as the runtime writes them, among a peer's other log lines.
func TestParseGCTrace(t *testing.T) {
	log := "time=2026-12-07T00:14:03Z level=WARN msg=\"something\"\n" +
		"gc 1 @0.045s 0%: 0.10+1.0+0.015 ms clock, 0.20+0.49/0.091/0.72+0.030 ms cpu, 3->3->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		"gc 3 @0.085s 1%: 0.13+2.1+0.045 ms clock, 0.27+0.36/0.58/0+0.091 ms cpu, 3->3->12 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)\n"
	s := parseGCTrace(strings.NewReader(log))
	if s.cycles != 2 || s.liveMB != 12 {
		t.Errorf("cycles %d, live %v MB; want 2, 12", s.cycles, s.liveMB)
	}
	if cpu := 0.20 + 0.49 + 0.091 + 0.72 + 0.030 + 0.27 + 0.36 + 0.58 + 0 + 0.091; math.Abs(s.cpuMS-cpu) > 1e-9 || math.Abs(s.idleMS-0.72) > 1e-9 {
		t.Errorf("cpu %v ms, idle %v; want %v, 0.72", s.cpuMS, s.idleMS, cpu)
	}
}

// TestGCSince checks that only the collections a run added to a peer's
// log are counted.
func TestGCSince(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "sluice-0.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := "gc 1 @0.045s 0%: 0.10+1.0+0.015 ms clock, 0.20+0.49/0.091/0.72+0.030 ms cpu, 3->3->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 1 P\n"
	f.WriteString(line + line)
	p := &peer{name: "sluice", env: goEnv, procs: []*proc{{log: f}}}
	sizes := p.logSizes()
	f.WriteString(line)
	if s := p.gcSince(sizes); s.cycles != 1 {
		t.Errorf("%d collections since the run began, want 1", s.cycles)
	}
	if !p.gcTraced() {
		t.Error("a peer with goEnv is not taken as traced")
	}
}
