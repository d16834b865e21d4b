package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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

// sluiceProc is the sluice process under test, its output in a log file.
type sluiceProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
}

func startSluice(bin, config, logPath string) (*sluiceProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create sluice log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-config", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sluice: %w", err)
	}
	s := &sluiceProc{cmd: cmd, done: make(chan struct{})}
	go s.wait()
	return s, nil
}

func (s *sluiceProc) wait() {
	s.err = s.cmd.Wait()
	close(s.done)
}

func (s *sluiceProc) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *sluiceProc) signal(sig os.Signal) error {
	if !s.alive() {
		return errors.New("sluice has exited")
	}
	return s.cmd.Process.Signal(sig)
}

// stop sends SIGTERM and waits up to grace for the exit; the result is
// the exit's error (nil for status 0). After grace it SIGKILLs.
func (s *sluiceProc) stop(grace time.Duration) error {
	if s.alive() {
		s.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-s.done:
		return s.err
	case <-time.After(grace):
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
		return fmt.Errorf("sluice did not exit within %v of SIGTERM", grace)
	}
}
