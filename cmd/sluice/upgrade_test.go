package main

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// buildSluice builds the sluice binary into a temporary directory.
func buildSluice(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestSocketActivation: sockets systemd passes (LISTEN_FDS) are served by
// the [[listener]] their FileDescriptorName names, without binding.
func TestSocketActivation(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildSluice(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the socket stays open through f
	// The address is taken (by the socket passed in): binding it would fail.
	file := writeConfig(t, `[[listener]]
name = "web"
address = "`+addr+`"
[[listener.route]]
upstream = "echo"
[[upstream]]
name = "echo"
servers = ["`+startEcho(t)+`"]
`)
	// systemd sets LISTEN_PID to the service's own pid: a shell that
	// execs keeps its pid.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec "$0" -config "$1"`, bin, file)
	cmd.ExtraFiles = []*os.File{f}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	log := newProcLog(stderr)
	log.wait(t, regexp.MustCompile(`msg="sluice started"`))
	if err := echoOnce(addr); err != nil {
		t.Fatalf("through the activated socket: %v", err)
	}
}

// procLog collects a process's stderr and lets a test wait for a line.
type procLog struct {
	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced on each line
}

func newProcLog(r io.Reader) *procLog {
	l := &procLog{more: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, sc.Text())
			close(l.more)
			l.more = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *procLog) wait(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	for {
		l.mu.Lock()
		for _, line := range l.lines {
			if m := re.FindStringSubmatch(line); m != nil {
				l.mu.Unlock()
				return m
			}
		}
		more := l.more
		l.mu.Unlock()
		select {
		case <-more:
		case <-timer.C:
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("no log line matching %s in:\n%s", re, strings.Join(l.lines, "\n"))
		}
	}
}

// echoOnce dials addr, echoes one byte and hangs up.
func echoOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, 1))
	return err
}

// TestUpgrade: SIGUSR2 starts the binary anew with the listening socket;
// no connection attempt made meanwhile fails, the old process drains its
// open connection and exits 0, and the new one serves on. A new process
// that cannot start (a broken configuration) leaves the old one serving.
// The admin listener's socket goes over too: once the new process is
// ready, it alone answers there, ready, while the old one drains.
func TestUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildSluice(t)
	addr, adminAddr := freeAddr(t), freeAddr(t)
	conf := `[admin]
address = "` + adminAddr + `"
[[listener]]
address = "` + addr + `"
[[listener.route]]
upstream = "echo"
[[upstream]]
name = "echo"
servers = ["` + startEcho(t) + `"]
`
	file := writeConfig(t, conf)
	old := exec.Command(bin, "-config", file)
	// A pipe of the test's own, not StderrPipe: Wait closes that once the
	// old process exits, and the new one, which writes to the same
	// stderr, would die of SIGPIPE.
	stderr, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old.Stderr = w
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { stderr.Close() })
	exited := make(chan error, 1)
	go func() { exited <- old.Wait() }()
	var newPid atomic.Int64
	t.Cleanup(func() {
		old.Process.Kill()
		if p := newPid.Load(); p > 0 {
			syscall.Kill(int(p), syscall.SIGKILL)
		}
	})
	log := newProcLog(stderr)
	log.wait(t, regexp.MustCompile(`msg="sluice started"`))

	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	echo(t, held, "before")

	// A broken file: the new process fails, the old one serves on.
	os.WriteFile(file, []byte(strings.Replace(conf, `upstream = "echo"`, `upstream = "nope"`, 1)), 0o644)
	old.Process.Signal(syscall.SIGUSR2)
	log.wait(t, regexp.MustCompile(`msg="upgrade failed; this process serves on"`))
	if err := echoOnce(addr); err != nil {
		t.Fatalf("after a failed upgrade: %v", err)
	}
	oldPid := strconv.Itoa(old.Process.Pid)
	if code, body := readyz(t, adminAddr); code != 200 || !strings.Contains(body, "pid="+oldPid) {
		t.Fatalf("/readyz after a failed upgrade = %d %q, want 200 from pid %s", code, body, oldPid)
	}
	os.WriteFile(file, []byte(conf), 0o644)

	const loops, each = 4, 150
	var failed atomic.Int64
	var wg sync.WaitGroup
	progress := make(chan struct{}, loops*each)
	for range loops {
		wg.Go(func() {
			for range each {
				if err := echoOnce(addr); err != nil {
					failed.Add(1)
					t.Logf("attempt: %v", err)
				}
				progress <- struct{}{}
			}
		})
	}
	// A connection streaming through the echo backend while it moves:
	// half its bytes before the signal, the rest from then on.
	streaming, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer streaming.Close()
	streaming.SetDeadline(time.Now().Add(30 * time.Second))
	const size = 8 << 20
	out := make([]byte, size)
	for i := range out {
		out[i] = byte(i*7 + i>>11)
	}
	signalled := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		_, err := streaming.Write(out[:size/2])
		<-signalled
		if err == nil {
			_, err = streaming.Write(out[size/2:])
		}
		wrote <- err
	}()
	back := make(chan []byte, 1)
	go func() {
		b := make([]byte, size)
		n, err := io.ReadFull(streaming, b)
		if err != nil {
			t.Errorf("streaming read %d bytes: %v", n, err)
		}
		back <- b[:n]
	}()

	for range 20 {
		<-progress
	}
	old.Process.Signal(syscall.SIGUSR2)
	close(signalled)
	m := log.wait(t, regexp.MustCompile(`msg="upgrade: the new process is ready; this one stops accepting" new_pid=(\d+)`))
	pid, _ := strconv.Atoi(m[1])
	newPid.Store(int64(pid))
	moved := log.wait(t, regexp.MustCompile(`msg="upgrade: connections moved to the new process" moved=(\d+) staying=(\d+)`))
	t.Logf("moved %s connections, %s stay", moved[1], moved[2])
	if moved[1] == "0" {
		t.Errorf("no connection moved")
	}
	wg.Wait()
	if err := <-wrote; err != nil {
		t.Fatalf("streaming write: %v", err)
	}
	if got := <-back; sha256.Sum256(got) != sha256.Sum256(out) {
		t.Fatalf("the stream came back different across the upgrade (%d of %d bytes)", len(got), size)
	}
	streaming.Close()
	if f := failed.Load(); f != 0 {
		log.mu.Lock()
		t.Errorf("%d of %d connection attempts failed across the upgrade; log:\n%s", f, loops*each, strings.Join(log.lines, "\n"))
		log.mu.Unlock()
	}
	for range 20 {
		if code, body := readyz(t, adminAddr); code != 200 || !strings.Contains(body, "pid="+m[1]) {
			t.Fatalf("/readyz while the old process drains = %d %q, want 200 from the new process, pid %s", code, body, m[1])
		}
	}

	// The held connections moved: the old process has nothing left to
	// drain and exits while they go on in the new one.
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the old process exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the old process did not exit once its connections moved")
	}
	echo(t, held, "served by the new process")
	held.Close()
	if err := echoOnce(addr); err != nil {
		t.Errorf("the new process: %v", err)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(20 * time.Second); ; {
		if !alive(pid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new process did not exit on SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readyz asks the admin listener at addr whether it is ready, on a
// connection of its own, and returns the status and the process's pid.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, "pid=" + resp.Header.Get("Sluice-Pid")
}

// alive reports whether process pid runs: it exists and is no zombie
// waiting for a parent (the new process is not this test's child).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
