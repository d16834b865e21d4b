package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTagger serves connections that are greeted with tag and a newline.
func startTagger(t *testing.T, tag string) string {
	t.Helper()
	return serveLoopback(t, func(c net.Conn) {
		io.WriteString(c, tag+"\n")
		c.Close()
	})
}

// waitLog waits until the log has a line with every one of parts.
func (r *sluiceRun) waitLog(parts ...string) string {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, l := range strings.Split(r.stderr.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(l, p)
			}
			if all {
				return l
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no log line with %q:\n%s", parts, r.stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (r *sluiceRun) tag() string {
	r.t.Helper()
	c := r.dial()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		r.t.Fatalf("read tag: %v", err)
	}
	return strings.TrimSpace(line)
}

// TestRunReload: SIGHUP reloads the whole file in place: a route's new
// upstream and the log format take effect, an open connection goes on,
// and a broken file changes nothing and says where it is broken.
func TestRunReload(t *testing.T) {
	r := startSluice(t, startEcho(t))
	c1 := r.dial()
	defer c1.Close()
	echo(t, c1, "hello")

	next := `[log]
format = "json"

[[listener]]
name = "plain"
address = "` + r.addr + `"
[[listener.route]]
upstream = "two"

[[upstream]]
name = "two"
servers = ["` + startTagger(t, "two") + `"]
`
	if err := os.WriteFile(r.file, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	r.signal(syscall.SIGHUP)
	line := r.waitLog(`"msg":"configuration reloaded"`)
	for _, want := range []string{`"listeners_changed":["` + r.addr + `"]`, `"upstreams_added":["two"]`, `"upstreams_removed":["echo"]`} {
		if !strings.Contains(line, want) {
			t.Errorf("reload line %s lacks %s", line, want)
		}
	}
	if got := r.tag(); got != "two" {
		t.Errorf("after the reload, a connection got %q, want two", got)
	}
	echo(t, c1, "after the reload")

	broken := strings.Replace(next, `upstream = "two"`, `upstream = "three"`, 1)
	if err := os.WriteFile(r.file, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	r.signal(syscall.SIGHUP)
	r.waitLog(`"msg":"reload failed; the running configuration is unchanged"`, r.file+`:8: listener[0].route[0].upstream`)
	if got := r.tag(); got != "two" {
		t.Errorf("after a failed reload, a connection got %q, want two", got)
	}
	echo(t, c1, "after the failed reload")
}
