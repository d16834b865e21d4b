package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A run whose CPU per request stands out (sluice's S3 at 1.5x tlsproxy's
// in two make bench runs, never when rerun alone) is explained only by
// what was read while it ran. probe reads, around a run, what the peer's
// CPU time went to and what else shared its CPU: the kernel's share of
// it, its threads' context switches and time waiting to run, and how busy
// each CPU was, with softirq and steal apart; and for a Go peer, its
// collections (gctrace.go). These are reads of /proc and of the peer's
// log before and after, nothing that runs meanwhile.

// diagMetrics are the probe's figures, listed run by run under the table
// of the scenarios that set them (scenario.diag).
func diagMetrics(unit string) []metricInfo {
	per := " per 1,000 " + unit
	return []metricInfo{
		{"sys_share", "terminator CPU-s in the kernel (share)", false},
		{"faults_per_k", "terminator's minor page faults" + per, false},
		{"vcs_per_k", "terminator's voluntary context switches" + per, false},
		{"ivcs_per_k", "terminator's involuntary context switches" + per, false},
		{"wait_ms_per_k", "terminator's ms runnable but waiting" + per, false},
		{"threads", "terminator's threads at the end", false},
		{"term_cpu_busy", "terminator CPU busy (share, steal apart)", false},
		{"term_cpu_softirq", "terminator CPU in softirq (share)", false},
		{"term_cpu_steal", "terminator CPU stolen by the host (share)", false},
		{"load_cpu_busy", "load CPU busy (share)", false},
		{"gcs_per_k", "Go: collections" + per, false},
		{"gc_cpu_ms_per_k", "Go: GC CPU ms" + per, false},
		{"gc_idle_ms_per_k", "Go: of which idle marking", false},
		{"gc_live_mb", "Go: largest live heap marked, MB", false},
	}
}

// cpuLine is one CPU's /proc/stat ticks: busy (not idle, iowait or
// steal), softirq, steal and all of them.
type cpuLine struct{ busy, softirq, steal, total uint64 }

// taskCounts adds up a process's threads' scheduler counters.
type taskCounts struct {
	vcs, ivcs uint64 // voluntary and involuntary context switches
	waitNS    uint64 // time runnable on a run queue, not running
	threads   int
}

type probe struct {
	used       usage // the peer's processes and children
	tasks      taskCounts
	term, load cpuLine
	logs       []int64 // the peer's log sizes (gctrace.go)
}

// startProbe reads the peer and the two CPUs before a run.
func (r *runner) startProbe(p *peer) *probe {
	pb := &probe{}
	pb.used = p.usage()
	pb.tasks = p.taskCounts()
	pb.term, pb.load = readCPULine(r.termCPU), readCPULine(r.loadCPU)
	if p.gcTraced() {
		pb.logs = p.logSizes()
	}
	return pb
}

// finish reads them again after a run of requests requests and returns
// what the peer used over the run (its CPU-s for the headline figures),
// and the differences as diagMetrics; a figure it cannot read is left out.
func (pb *probe) finish(r *runner, p *peer, requests float64) (usage, metrics) {
	m := metrics{}
	u := p.usage().since(pb.used)
	if share, ok := u.sysShare(); ok {
		m["sys_share"] = share
	}
	if requests > 0 {
		m["faults_per_k"] = float64(u.minflt) / (requests / 1000)
	}
	tc := p.taskCounts()
	if requests > 0 && tc.threads > 0 {
		k := requests / 1000
		m["vcs_per_k"] = float64(tc.vcs-min(tc.vcs, pb.tasks.vcs)) / k
		m["ivcs_per_k"] = float64(tc.ivcs-min(tc.ivcs, pb.tasks.ivcs)) / k
		m["wait_ms_per_k"] = float64(tc.waitNS-min(tc.waitNS, pb.tasks.waitNS)) / 1e6 / k
		m["threads"] = float64(tc.threads)
	}
	if d := readCPULine(r.termCPU).since(pb.term); d.total > 0 {
		m["term_cpu_busy"] = float64(d.busy) / float64(d.total)
		m["term_cpu_softirq"] = float64(d.softirq) / float64(d.total)
		m["term_cpu_steal"] = float64(d.steal) / float64(d.total)
	}
	if d := readCPULine(r.loadCPU).since(pb.load); d.total > 0 {
		m["load_cpu_busy"] = float64(d.busy) / float64(d.total)
	}
	if p.gcTraced() && requests > 0 {
		gc, k := p.gcSince(pb.logs), requests/1000
		m["gcs_per_k"] = float64(gc.cycles) / k
		m["gc_cpu_ms_per_k"] = gc.cpuMS / k
		m["gc_idle_ms_per_k"] = gc.idleMS / k
		m["gc_live_mb"] = gc.liveMB
	}
	return u, m
}

func (c cpuLine) since(before cpuLine) cpuLine {
	if c.total <= before.total {
		return cpuLine{}
	}
	return cpuLine{c.busy - before.busy, c.softirq - before.softirq, c.steal - before.steal, c.total - before.total}
}

// parseCPULine reads one CPU's line of /proc/stat ("cpu1 user nice system
// idle iowait irq softirq steal guest guest_nice"). Guest time is counted
// in user time already.
func parseCPULine(stat []byte, cpu string) (cpuLine, error) {
	for line := range strings.Lines(string(stat)) {
		f := strings.Fields(line)
		if len(f) < 6 || f[0] != "cpu"+cpu {
			continue
		}
		var c cpuLine
		for i, v := range f[1:min(len(f), 9)] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return cpuLine{}, fmt.Errorf("/proc/stat cpu%s field %d: %w", cpu, i+1, err)
			}
			c.total += n
			switch i {
			case 3, 4: // idle, iowait
			case 6:
				c.softirq += n
				c.busy += n
			case 7:
				c.steal += n
			default:
				c.busy += n
			}
		}
		return c, nil
	}
	return cpuLine{}, fmt.Errorf("/proc/stat: no line for cpu%s", cpu)
}

// readCPULine is parseCPULine on /proc/stat; zero when it cannot.
func readCPULine(cpu string) cpuLine {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuLine{}
	}
	c, _ := parseCPULine(stat, cpu)
	return c
}

// taskCounts adds up the scheduler counters of every thread of the peer's
// processes and their children. A thread that exited meanwhile takes its
// counts with it; the peers' threads live as long as they do.
func (p *peer) taskCounts() taskCounts {
	var tc taskCounts
	for _, pid := range p.pids() {
		dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
		for _, d := range dirs {
			if addTask(&tc, d) {
				tc.threads++
			}
		}
	}
	return tc
}

// addTask adds one thread's counters from its /proc directory.
func addTask(tc *taskCounts, dir string) bool {
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return false
	}
	vcs, ivcs := statusCounts(status)
	tc.vcs += vcs
	tc.ivcs += ivcs
	if b, err := os.ReadFile(filepath.Join(dir, "schedstat")); err == nil {
		// "time on CPU, time waiting on a run queue, timeslices", in ns.
		if f := strings.Fields(string(b)); len(f) >= 2 {
			w, _ := strconv.ParseUint(f[1], 10, 64)
			tc.waitNS += w
		}
	}
	return true
}

// statusCounts reads the context switch counts from a thread's status.
func statusCounts(status []byte) (vcs, ivcs uint64) {
	for line := range strings.Lines(string(status)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "voluntary_ctxt_switches":
			vcs = n
		case "nonvoluntary_ctxt_switches":
			ivcs = n
		}
	}
	return vcs, ivcs
}
