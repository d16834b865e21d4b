package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process the runner started and must stop, by PID.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   *os.File
	owner *procs
	once  sync.Once
}

// procs is every process the runner has started and not yet stopped, so
// that an interrupted run can stop them all.
type procs struct {
	mu   sync.Mutex
	live map[*proc]struct{}
}

func (ps *procs) add(p *proc) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.live == nil {
		ps.live = make(map[*proc]struct{})
	}
	ps.live[p] = struct{}{}
}

func (ps *procs) remove(p *proc) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.live, p)
}

// stopAll stops every live process.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	live := make([]*proc, 0, len(ps.live))
	for p := range ps.live {
		live = append(live, p)
	}
	ps.mu.Unlock()
	for _, p := range live {
		p.stop()
	}
}

// start runs argv pinned to cpu (taskset) with its output in dir/name.log.
func (ps *procs) start(dir, name, cpu string, env []string, argv ...string) (*proc, error) {
	log, err := os.Create(fmt.Sprintf("%s/%s.log", dir, name))
	if err != nil {
		return nil, err
	}
	args := append([]string{"-c", cpu}, argv...)
	cmd := exec.Command("taskset", args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	// Own process group, so stop reaches workers the process forks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: log, owner: ps}
	ps.add(p)
	return p, nil
}

// pid is the process taskset became (taskset execs the command).
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM to the process group, then SIGKILL after a grace
// period, and reaps the process.
func (p *proc) stop() { p.once.Do(p.doStop) }

func (p *proc) doStop() {
	defer p.owner.remove(p)
	pgid := p.pid()
	syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	// Workers that outlive their master (nginx) go with the group.
	syscall.Kill(-pgid, syscall.SIGKILL)
	p.log.Close()
}

// tree returns pid and all its descendants, from /proc.
func tree(root int) []int {
	children := make(map[int][]int)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

type stat struct {
	ppid int
	usage
}

// usage is what a process has used: CPU time in clock ticks, and minor
// page faults (each a page the kernel mapped in, zeroed if new).
type usage struct {
	utime, stime, minflt uint64
}

// since is what was used after before. A counter that went down (a
// process of the tree gone meanwhile) counts as nothing rather than
// wrapping around.
func (u usage) since(before usage) usage {
	sub := func(a, b uint64) uint64 { return a - min(a, b) }
	return usage{sub(u.utime, before.utime), sub(u.stime, before.stime), sub(u.minflt, before.minflt)}
}

// cpuSeconds is the user and system time used.
func (u usage) cpuSeconds() float64 { return float64(u.utime+u.stime) / clockTicks }

// sysShare is the kernel's share of the CPU time used; ok is false when
// none was.
func (u usage) sysShare() (share float64, ok bool) {
	if t := u.utime + u.stime; t > 0 {
		return float64(u.stime) / float64(t), true
	}
	return 0, false
}

// readStat parses /proc/pid/stat (the command name may hold spaces).
func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return stat{}, errors.New("bad stat")
	}
	f := strings.Fields(s[i+2:])
	// f[0] is field 3 (state); ppid is field 4, minflt 10, utime 14,
	// stime 15.
	if len(f) < 13 {
		return stat{}, errors.New("short stat")
	}
	ppid, _ := strconv.Atoi(f[1])
	mf, _ := strconv.ParseUint(f[7], 10, 64)
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return stat{ppid: ppid, usage: usage{utime: ut, stime: st, minflt: mf}}, nil
}

// clockTicks is USER_HZ, 100 on every Linux we run on.
const clockTicks = 100

// cpuTicks is the ticks one CPU was busy, stolen ones included (the
// CPU was not there for its work), and all its ticks, from /proc/stat, so
// that two readings give its busy fraction in between.
func cpuTicks(stat []byte, cpu string) (busy, total uint64, err error) {
	c, err := parseCPULine(stat, cpu)
	return c.busy + c.steal, c.total, err
}

// cpuBusy reads cpuTicks from /proc/stat; zeros when it cannot.
func cpuBusy(cpu string) (busy, total uint64) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	busy, total, _ = cpuTicks(stat, cpu)
	return busy, total
}

// rssBytes is the resident set size of a process and its descendants.
func rssBytes(root int) int64 {
	var total int64
	for _, pid := range tree(root) {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				total += kb << 10
			}
		}
		f.Close()
	}
	return total
}

// waitPort waits until addr accepts connections or ctx ends.
func waitPort(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not accept connections: %w", addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitFree waits (up to 5 s) until nothing accepts on addr: a stopped
// peer's workers may take a moment to exit.
func waitFree(addr string) error {
	for range 250 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s is still in use (a process left from an earlier run?)", addr)
}
