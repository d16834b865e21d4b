package main

import (
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseGreeting(t *testing.T) {
	g, err := parseGreeting("client=127.0.0.99:41234 dst=127.0.0.10:39001 instance=2\n")
	if err != nil || g.instance != 2 || g.src != "127.0.0.99:41234" || g.dst != "127.0.0.10:39001" {
		t.Fatalf("parseGreeting = %+v, %v", g, err)
	}
	for _, bad := range []string{"", "hello\n", "client=x instance=4\n", "instance=\n"} {
		if _, err := parseGreeting(bad); err == nil {
			t.Errorf("parseGreeting(%q): no error", bad)
		}
	}
}

func TestParseStat(t *testing.T) {
	csv := "# pxname,svname,qcur,status,weight\n" +
		"fleet,FRONTEND,,OPEN,\n" +
		"sluices,s1,0,UP,1\n" +
		"sluices,s2,0,DOWN,1\n" +
		"sluices,s3,0,UP 1/2,1\n" +
		"sluices,BACKEND,0,UP,2\n" +
		"other,s1,0,DOWN,1\n"
	st, err := parseStat(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{1: "UP", 2: "DOWN", 3: "UP 1/2"}
	for n, s := range want {
		if st[n] != s {
			t.Errorf("server %d: %q, want %q", n, st[n], s)
		}
	}
	if len(st) != 3 {
		t.Errorf("states %v, want only s1-s3 of sluices", st)
	}
}

func TestRetries(t *testing.T) {
	var r retries
	for _, line := range []string{
		"2026-12-05T14:26:20.41+00:00 127.0.0.99:56289 [05/Dec/2026:14:26:18.163] fleet sluices/s1 1/0/2254 1279 -- 24/24/23/7/0 0/0",
		"2026-12-05T14:26:20.41+00:00 127.0.0.99:56290 [05/Dec/2026:14:26:18.163] fleet sluices/s3 1/1001/2254 1279 -- 24/24/23/7/+1 0/0",
		"2026-12-05T14:26:20.41+00:00 127.0.0.99:56291 [05/Dec/2026:14:26:18.163] fleet sluices/s2 1/-1/3003 0 SC 24/24/23/7/3 0/0",
		"[WARNING]  (26774) : Server sluices/s2 is DOWN, reason: Layer4 connection problem",
	} {
		r.add(line)
	}
	if r.retried != 2 || r.redispatched != 1 {
		t.Errorf("retries %+v, want 2 retried, 1 redispatched", r)
	}
}

func TestLogFollower(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.log")
	if err := writeFile(path, `{"msg":"sluice started","pid":1}`+"\n"); err != nil {
		t.Fatal(err)
	}
	l, err := followLog(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(`{"time":"x","level":"INFO","msg":"upgrade: the new process is ready; this one stops accepting","new_pid":26843}` + "\n")
	f.WriteString("goroutine 1 [running]:\n")
	f.WriteString(`{"msg":"moved","moved":"not a number"}` + "\n")
	f.WriteString(`{"msg":"upgrade: connections moved to the new process","moved":3,"staying":8}` + "\n")
	f.WriteString(`{"msg":"half a line`)
	var got []logLine
	err = l.until(time.Now(), func(line logLine) (bool, error) {
		got = append(got, line)
		return false, nil
	})
	if err != errNotLogged {
		t.Errorf("until: %v, want errNotLogged", err)
	}
	if len(got) != 3 || got[0].Msg != msgUpgradeReady || got[0].NewPID != 26843 || got[1].Msg != "moved" ||
		got[2].Moved != 3 || got[2].Staying != 8 {
		t.Errorf("lines %+v", got)
	}
}

func TestResumeRoundJudge(t *testing.T) {
	shared := resumeRound{version: tls.VersionTLS13, issuer: 1, conns: [4]int{0, 2, 2, 2}, resumed: [4]int{0, 2, 2, 2}}
	control := resumeRound{version: tls.VersionTLS13, issuer: 1, conns: [4]int{0, 2, 2, 2}, resumed: [4]int{0, 2, 0, 0}}
	cases := []struct {
		name   string
		rr     resumeRound
		shared bool
		bad    int
	}{
		{"shared keys, all resumed", shared, true, 0},
		{"shared keys, only the issuer resumed", control, true, 2},
		{"a key each, only the issuer resumed", control, false, 0},
		{"a key each, all resumed", shared, false, 2},
		{"no reconnect on s3", resumeRound{issuer: 1, conns: [4]int{0, 3, 3, 0}, resumed: [4]int{0, 3, 3, 0}}, true, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.rr.judge(c.shared); len(got) != c.bad {
				t.Errorf("judge(%v) = %q, want %d findings", c.shared, got, c.bad)
			}
		})
	}
}

// TestHAProxyConfig checks the generated configuration with `haproxy -c`
// where HAProxy is installed (make fleet installs it).
func TestHAProxyConfig(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/haproxy"); err != nil {
			t.Skip("haproxy not installed")
		}
	}
	dir := t.TempDir()
	insts := []*instance{
		{n: 1, addr: "127.0.0.11:9001", admin: "127.0.0.11:9101"},
		{n: 2, addr: "127.0.0.12:9001", admin: "127.0.0.12:9101"},
		{n: 3, addr: "127.0.0.13:9001", admin: "127.0.0.13:9101"},
	}
	for _, broken := range []bool{false, true} {
		h := &haproxy{addr: "127.0.0.10:9000", sock: filepath.Join(dir, "s.sock"), sendProxy: !broken, redispatch: !broken}
		text := h.render(insts)
		path := filepath.Join(dir, "haproxy.cfg")
		if err := writeFile(path, text); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
			t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, text)
		}
		if got := strings.Count(text, "send-proxy-v2"); got != map[bool]int{false: 3, true: 0}[broken] {
			t.Errorf("broken=%v: %d send-proxy-v2", broken, got)
		}
	}
}

func TestInstanceRender(t *testing.T) {
	in := &instance{n: 2, addr: "127.0.0.12:9001", admin: "127.0.0.12:9101", backend: "127.0.0.22:9201",
		cert: "/c.pem", key: "/c.key", ticketKeys: "/t.keys", drain: 50e9, acceptProxy: true}
	text := in.render()
	for _, want := range []string{
		`session_ticket_keys = "/t.keys"`, `drain_timeout = "50s"`, `accept_proxy = true`,
		`trusted_proxies = ["127.0.0.10/32"]`, `send_proxy = "v2"`, `servers = ["127.0.0.22:9201"]`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("config lacks %s:\n%s", want, text)
		}
	}
	// Top-level keys come before the first table.
	if strings.Index(text, "session_ticket_keys") > strings.Index(text, "[") {
		t.Errorf("session_ticket_keys after a table:\n%s", text)
	}
}

// TestSightingsBetween: a connection's sightings are those within its
// life; a later connection from the same port (reused by the kernel) that
// reached another instance is not one of them.
func TestSightingsBetween(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	s := &sightings{bySrc: map[string][]sighting{}}
	s.add(sighting{src: "127.0.0.99:34689", instance: 2, at: t0.Add(10 * time.Millisecond)})
	s.add(sighting{src: "127.0.0.99:34689", instance: 1, at: t0.Add(4 * time.Second)})
	if got := s.seenBetween("127.0.0.99:34689", t0, t0.Add(time.Second)); !slices.Equal(got, []int{2}) {
		t.Errorf("within the first connection's life: %v, want [2]", got)
	}
	if got := s.seenSince("127.0.0.99:34689", t0); !slices.Equal(got, []int{2, 1}) {
		t.Errorf("since its start: %v, want [2 1]", got)
	}
}
