// Package proc runs and follows the processes of the bench programs
// (bench/soak, bench/fleet): those they start, and those a sluice binary
// upgrade starts, whose parent is the sluice they replace until it exits
// and the program, a child subreaper, takes them in. Processes are
// signalled through os.Process (a pidfd), never by a pid that may have
// been reused, nor by name.
package proc

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

// Proc is one process.
type Proc struct {
	Name string
	Pid  int
	p    *os.Process
	done chan struct{}
	err  error // the exit's, once done is closed: nil for status 0
}

// ErrExitUnknown is the exit of a process that was not this program's
// child when it ended: it is gone, its status is not known.
var ErrExitUnknown = errors.New("exit status unknown (not this program's child when it ended)")

// Start runs bin with args, its output appended to logPath.
func Start(name, bin string, args []string, logPath string) (*Proc, error) {
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
	p := &Proc{Name: name, Pid: cmd.Process.Pid, p: cmd.Process, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Adopt follows a process an upgrade started. It cannot be waited for
// until its parent exits and it is handed to this program (see
// BecomeSubreaper); until then its pid is polled.
func Adopt(name string, pid int) (*Proc, error) {
	op, err := os.FindProcess(pid)
	if err != nil {
		return nil, fmt.Errorf("find %s %d: %w", name, pid, err)
	}
	p := &Proc{Name: name, Pid: pid, p: op, done: make(chan struct{})}
	go p.watch()
	return p, nil
}

// watch polls until the process has exited: reaped here once it is this
// program's child, or gone (or a zombie someone else must reap) while it
// is not.
func (p *Proc) watch() {
	defer close(p.done)
	defer p.p.Release() // its pidfd (make soak counts the soak's descriptors); Start's are released by Wait
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(p.Pid, &ws, syscall.WNOHANG, nil)
		switch {
		case pid == p.Pid:
			p.err = exitError(ws)
			return
		case errors.Is(err, syscall.ECHILD) && !Running(p.Pid):
			p.err = ErrExitUnknown
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

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit's error once Done is closed: nil for status 0.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Alive reports whether the process has not exited yet.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig, unless the process has exited.
func (p *Proc) Signal(sig os.Signal) error {
	if !p.Alive() {
		return fmt.Errorf("%s %d has exited", p.Name, p.Pid)
	}
	return p.p.Signal(sig)
}

// Exited waits up to d for the process to exit; once it has, err is its
// exit's.
func (p *Proc) Exited(d time.Duration) (ok bool, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true, p.err
	case <-t.C:
		return false, nil
	}
}

// Stop sends SIGTERM and waits up to grace for the exit, whose error it
// returns (nil for status 0); after grace it SIGKILLs.
func (p *Proc) Stop(grace time.Duration) error {
	if !p.Alive() {
		return p.err
	}
	p.Signal(syscall.SIGTERM)
	if ok, err := p.Exited(grace); ok {
		return err
	}
	p.Signal(syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s %d did not exit within %v of SIGTERM (killed)", p.Name, p.Pid, grace)
}

// Kill SIGKILLs the process and waits until it is gone.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// BecomeSubreaper makes this program the parent of the processes that
// upgrades start once their own parent exits, so that it can reap them,
// learn their exit status and see that none is left
// (PR_SET_CHILD_SUBREAPER).
func BecomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become a child subreaper: %w", err)
	}
	return nil
}

// Running says whether pid is a process that has not exited: a zombie
// has ("Z" in /proc/PID/stat, after the name in parentheses).
func Running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndex(b, []byte(") "))
	return i >= 0 && len(b) > i+2 && b[i+2] != 'Z' && b[i+2] != 'X'
}

// Children lists this process's children, zombies included, as "PID
// (name)". The kernel lists them per thread that forked them.
func Children() []string {
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
