package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// backendProc is one backend slot: an address that a `soak backend`
// process serves, killed and restarted there. Only the controller's own
// children are signalled, always by their PID.
type backendProc struct {
	slot     int
	upstream string
	addr     string
	args     []string // after "backend"
	exe      string
	dir      string
	timeout  time.Duration
	collect  func(verdict)
	badLine  func(string)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once the current process is reaped
}

// start runs a new process on the slot's address and waits until it
// listens. A restart right after a kill may find the port still bound for
// a moment, so a process that exits before "ready" is tried again.
func (b *backendProc) start(ctx context.Context) (int, error) {
	var lastErr error
	for attempt := range 20 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		pid, err := b.startOnce()
		if err == nil {
			return pid, nil
		}
		lastErr = err
	}
	return 0, fmt.Errorf("start backend %d on %s: %w", b.slot, b.addr, lastErr)
}

func (b *backendProc) startOnce() (int, error) {
	logf, err := os.OpenFile(filepath.Join(b.dir, fmt.Sprintf("backend-%d.log", b.slot)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open backend log: %w", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(b.exe, append([]string{"backend", "-listen", b.addr, "-timeout", b.timeout.String()}, b.args...)...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("backend stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start backend: %w", err)
	}
	ready := make(chan error, 1)
	done := make(chan struct{})
	go b.readOutput(cmd, out, ready, done)
	select {
	case err := <-ready:
		if err != nil {
			<-done
			return 0, err
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		return 0, errors.New("backend not ready within 10s")
	}
	b.mu.Lock()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()
	return cmd.Process.Pid, nil
}

// readOutput owns a backend process's stdout and its reaping: the ready
// line, then verdicts until EOF (its exit), then Wait.
func (b *backendProc) readOutput(cmd *exec.Cmd, out io.Reader, ready chan<- error, done chan<- struct{}) {
	defer close(done)
	sc := bufio.NewScanner(out)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if strings.HasPrefix(line, "ready ") {
				ready <- nil
				continue
			}
		}
		v, err := parseVerdict(line)
		if err != nil {
			b.badLine(line)
			continue
		}
		b.collect(v)
	}
	err := cmd.Wait()
	if first {
		ready <- fmt.Errorf("backend exited before it was ready: %v", err)
	}
}

// kill SIGKILLs the current process and waits until it is reaped; it
// returns the pid and when the signal was sent and the process gone.
func (b *backendProc) kill() (k kill, err error) {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return kill{}, errors.New("backend slot is down")
	}
	k = kill{PID: cmd.Process.Pid, Slot: b.slot, Upstream: b.upstream, At: time.Now()}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return kill{}, fmt.Errorf("kill backend %d: %w", k.PID, err)
	}
	<-done
	k.Dead = time.Now()
	return k, nil
}

// stop asks the current process to finish its streams and exit (SIGTERM),
// and SIGKILLs it after grace.
func (b *backendProc) stop(grace time.Duration) error {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("backend %d did not exit within %v of SIGTERM", cmd.Process.Pid, grace)
	}
	if !cmd.ProcessState.Success() {
		return fmt.Errorf("backend %d: %v", cmd.Process.Pid, cmd.ProcessState)
	}
	return nil
}

// procStat is what /proc/PID/stat says of a process.
type procStat struct {
	pid, ppid int
	comm      string
	state     byte
}

func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 2 {
		return procStat{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, false
	}
	return procStat{pid: pid, ppid: ppid, comm: string(b[open+1 : end]), state: f[0][0]}, true
}

// procComm is the name /proc gives a process run from bin: its base name
// cut to 15 bytes (TASK_COMM_LEN).
func procComm(bin string) string {
	comm := filepath.Base(bin)
	return comm[:min(len(comm), 15)]
}

// liveSluices lists the running processes named comm that are cur or a
// child of cur or of the soak: every sluice of the run, as an upgrade's
// new process is the child of the old one, and the soak takes in orphans.
func liveSluices(comm string, cur int) []int {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readProcStat(pid)
		if !ok || st.comm != comm || st.state == 'Z' || st.state == 'X' {
			continue
		}
		if pid == cur || st.ppid == cur || st.ppid == self {
			pids = append(pids, pid)
		}
	}
	return pids
}
