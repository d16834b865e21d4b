// Package handover passes listening sockets from a running sluice to a new
// one started from its executable (a binary upgrade), so that no
// connection attempt is refused: the new process accepts on the very
// sockets the old one listens on, says when it is ready, and only then
// does the old one stop accepting.
//
// It is a few lines of os/exec: the sockets go as extra descriptors (3
// and on), named by their configured addresses in an environment
// variable, and the new process reports readiness by writing a byte to
// one more descriptor, a pipe. (github.com/cloudflare/tableflip does the
// same with more machinery for a parent that restarts itself repeatedly;
// sluice's old process exits once the new one is ready, so the pipe
// suffices.)
package handover

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The environment of a new process.
const (
	envAddrs = "SLUICE_INHERIT_ADDRS" // the sockets' addresses, one a line, for fds 3, 4, ...
	envReady = "SLUICE_READY_FD"      // the descriptor to write one byte to when ready
)

// ErrNotReady is returned by Start when the new process does not say it is
// ready in time, or exits first.
var ErrNotReady = errors.New("handover: the new process did not become ready")

// Child is a new process that said it is ready.
type Child struct {
	Pid int
	cmd *exec.Cmd
}

// Start runs exe with args and the listening sockets files, keyed by
// their configured addresses, and conns, the child's end of a ConnPair
// (nil: none), and waits up to timeout for it to say it is ready. The
// files are the caller's to close. On failure the new process is killed
// and waited for; the caller goes on serving.
func Start(exe string, args []string, files map[string]*os.File, conns *os.File, stdout, stderr io.Writer, timeout time.Duration) (*Child, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("handover: pipe: %w", err)
	}
	defer r.Close()
	addrs := make([]string, 0, len(files))
	extra := make([]*os.File, 0, len(files)+1)
	for addr, f := range files {
		addrs = append(addrs, addr)
		extra = append(extra, f)
	}
	extra = append(extra, w)
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(withoutHandover(os.Environ()),
		envAddrs+"="+strings.Join(addrs, "\n"),
		envReady+"="+strconv.Itoa(3+len(files)))
	if conns != nil {
		cmd.Env = append(cmd.Env, envConns+"="+strconv.Itoa(3+len(extra)))
		extra = append(extra, conns)
	}
	cmd.ExtraFiles = extra
	err = cmd.Start()
	w.Close() // the child holds its copy: EOF here once it exits
	restoreNonblock(files)
	if err != nil {
		return nil, fmt.Errorf("handover: start %s: %w", exe, err)
	}
	ready := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := r.Read(b[:])
		ready <- err
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err = <-ready:
		if err == nil {
			return &Child{Pid: cmd.Process.Pid, cmd: cmd}, nil
		}
		err = fmt.Errorf("%w: it exited", ErrNotReady)
	case <-timer.C:
		err = fmt.Errorf("%w within %s", ErrNotReady, timeout)
	}
	cmd.Process.Kill()
	werr := cmd.Wait()
	return nil, fmt.Errorf("%w (%v)", err, werr)
}

// restoreNonblock puts the sockets back in non-blocking mode. os/exec
// takes each file's descriptor with Fd, which makes it blocking, and a
// copy shares that flag with the listener it was made from: this process's
// accept loops would then block in accept(2) until a client came, where
// no deadline or close reaches them, and a reload or a later upgrade would
// wait for that client. (A new process restores the flag too, when it
// takes the sockets; one that fails first does not.)
func restoreNonblock(files map[string]*os.File) {
	for _, f := range files {
		if rc, err := f.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { syscall.SetNonblock(int(fd), true) })
		}
	}
}

// Release lets the child run on by itself: the old process does not wait
// for it.
func (c *Child) Release() error { return c.cmd.Process.Release() }

// Inherited returns the listening sockets this process was handed, keyed
// by address (none when it was started otherwise), and a function that
// tells the old process this one is ready; it is safe to call when
// nothing was inherited. The environment is cleared, so that a later
// upgrade of this process does not pass it on.
func Inherited() (files map[string]*os.File, ready func() error, err error) {
	addrs, ok := os.LookupEnv(envAddrs)
	readyFD := os.Getenv(envReady)
	os.Unsetenv(envAddrs)
	os.Unsetenv(envReady)
	if !ok {
		return nil, func() error { return nil }, nil
	}
	files = make(map[string]*os.File)
	if addrs != "" {
		for i, addr := range strings.Split(addrs, "\n") {
			files[addr] = os.NewFile(uintptr(3+i), addr)
		}
	}
	fd, err := strconv.Atoi(readyFD)
	if err != nil {
		return nil, nil, fmt.Errorf("handover: %s=%q: %w", envReady, readyFD, err)
	}
	pipe := os.NewFile(uintptr(fd), "ready")
	return files, func() error {
		defer pipe.Close()
		_, err := pipe.Write([]byte{1})
		return err
	}, nil
}

func withoutHandover(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, envAddrs+"=") && !strings.HasPrefix(kv, envReady+"=") && !strings.HasPrefix(kv, envConns+"=") {
			out = append(out, kv)
		}
	}
	return out
}
