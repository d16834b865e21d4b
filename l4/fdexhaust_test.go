package l4

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOutOfDescriptors: a dial that fails because this process has no
// descriptor left says so in the access log, and does not count against
// the backend (max_fails). The test lowers RLIMIT_NOFILE, so it runs in a
// child process of its own.
func TestOutOfDescriptors(t *testing.T) {
	if os.Getenv("SLUICE_TEST_FD_CHILD") == "1" {
		outOfDescriptorsChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOutOfDescriptors$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "SLUICE_TEST_FD_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func outOfDescriptorsChild(t *testing.T) {
	w := newWorld(t)
	be := w.backend(echo)
	cfg := w.simple(be.addr())
	cfg.Listeners[0].TLS = nil
	one := 1
	cfg.Upstreams[0].MaxFails = &one
	p, addrs := w.serve(cfg)

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	saved := lim
	lim.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)
	// Fill every descriptor but one, which the client's socket takes;
	// sluice then accepts (retrying while it cannot) once a second one is
	// freed, and has none left for its dial.
	var fillers []*os.File
	defer func() {
		for _, f := range fillers {
			f.Close()
		}
	}()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		fillers = append(fillers, f)
	}
	free := func() {
		fillers[len(fillers)-1].Close()
		fillers = fillers[:len(fillers)-1]
	}
	free()
	c, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Only once sluice has met the limit in accept: freed before that, the
	// descriptor would let it accept at once (a loaded machine's
	// scheduler can run the test this far first), and there would be no
	// episode for the recovery line below to end.
	w.waitLog(`msg="accept failed`)
	free()
	line := w.waitLog("msg=access", "reason=out_of_descriptors")
	t.Log(line)
	// The accepts that failed meanwhile are one episode: one warning as
	// it began, and one line once accepts go a second without failing.
	for len(fillers) > 0 {
		free()
	}
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)
	deadline := time.Now().Add(testTimeout)
	for !strings.Contains(w.logs.String(), `msg="accept recovered"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery line:\n%s", w.logs.String())
		}
		if c, err := net.Dial("tcp", addrs[0]); err == nil {
			c.Close()
		}
		time.Sleep(50 * time.Millisecond) // connections a while apart, not a flood
	}
	if n := strings.Count(w.logs.String(), `msg="accept failed`); n != 1 {
		t.Errorf("%d accept-failure warnings, want 1:\n%s", n, w.logs.String())
	}
	// Give the descriptors back before anything else needs one.
	for len(fillers) > 0 {
		free()
	}
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)
	srv := p.gen.servers[0].Routes[0].Upstream.Servers[0]
	if !srv.available(time.Now()) {
		t.Error("the backend was marked down for this process's want of descriptors")
	}
}
