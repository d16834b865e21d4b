package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proc is one process of the fleet: one this program started (sluice,
// HAProxy), or one a sluice upgrade started, whose parent is the sluice
// it replaces. It is signalled through os.Process (a pidfd), never by a
// name, and only the fleet's own processes are.
type proc struct {
	name string
	pid  int
	p    *os.Process
	done chan struct{}
	err  error // the exit's, once done is closed: nil for status 0
}

// errExitUnknown is the exit of a process that was not this program's
// child when it ended: it is gone, its status is not known.
var errExitUnknown = errors.New("exit status unknown (not the fleet's child)")

// startProc runs bin with args, its stdout and stderr appended to logPath.
func startProc(name, bin string, args []string, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, pid: cmd.Process.Pid, p: cmd.Process, done: make(chan struct{})}
	go p.wait(cmd)
	return p, nil
}

func (p *proc) wait(cmd *exec.Cmd) {
	p.err = cmd.Wait()
	close(p.done)
}

// adoptProc follows a process a sluice upgrade started. It is the child
// of the process it replaces until that one exits, and then this
// program's (see becomeSubreaper); until it can be reaped its pid is
// polled.
func adoptProc(name string, pid int) (*proc, error) {
	op, err := os.FindProcess(pid)
	if err != nil {
		return nil, fmt.Errorf("find %s %d: %w", name, pid, err)
	}
	p := &proc{name: name, pid: pid, p: op, done: make(chan struct{})}
	go p.watch()
	return p, nil
}

func (p *proc) watch() {
	defer close(p.done)
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(p.pid, &ws, syscall.WNOHANG, nil)
		switch {
		case pid == p.pid:
			p.err = exitError(ws)
			return
		case errors.Is(err, syscall.ECHILD) && !running(p.pid):
			p.err = errExitUnknown
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func exitError(ws syscall.WaitStatus) error {
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		return nil
	case ws.Exited():
		return fmt.Errorf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Errorf("signal: %v", ws.Signal())
	}
	return fmt.Errorf("wait status %#x", uint32(ws))
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) signal(sig os.Signal) error {
	if !p.alive() {
		return fmt.Errorf("%s %d has exited", p.name, p.pid)
	}
	return p.p.Signal(sig)
}

// exited waits up to d for the process to exit; once it has, err is
// its exit's.
func (p *proc) exited(d time.Duration) (ok bool, err error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(d):
		return false, nil
	}
}

// stop sends SIGTERM and waits up to grace for the exit, whose error it
// returns (nil for status 0); after grace it SIGKILLs.
func (p *proc) stop(grace time.Duration) error {
	if !p.alive() {
		return p.err
	}
	p.signal(syscall.SIGTERM)
	if ok, err := p.exited(grace); ok {
		return err
	}
	p.signal(syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s %d did not exit within %v of SIGTERM (killed)", p.name, p.pid, grace)
}

// kill SIGKILLs the process and waits until it is gone.
func (p *proc) kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// becomeSubreaper makes this program the parent of the sluice processes
// that upgrades start once their own parent exits, so that it can reap
// them, learn their exit status and see that none is left
// (PR_SET_CHILD_SUBREAPER).
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become a child subreaper: %w", err)
	}
	return nil
}

// running says whether pid is a process that has not exited: a zombie
// has ("Z" in /proc/PID/stat, after the name in parentheses).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, ok := bytes.Cut(b, []byte(") "))
	return ok && len(after) > 0 && after[0] != 'Z' && after[0] != 'X'
}

// children lists this process's children, zombies included, as "PID
// (name)": after the teardown there must be none. The kernel lists them
// per thread that forked them.
func children() []string {
	files, _ := filepath.Glob("/proc/self/task/*/children")
	var kids []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, pid := range strings.Fields(string(b)) {
			comm, _ := os.ReadFile("/proc/" + pid + "/comm")
			kids = append(kids, fmt.Sprintf("%s (%s)", pid, strings.TrimSpace(string(comm))))
		}
	}
	return kids
}
