package l4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// listeners makes one plain listener per address, each routed to "app",
// reuse_port set on those listed in reuse.
func listeners(addrs []string, reuse ...int) *Config {
	cfg := &Config{Upstreams: []UpstreamConfig{{Name: "app", Servers: []string{"127.0.0.1:9000"}}}}
	for i, a := range addrs {
		l := ListenerConfig{Address: a, Routes: []RouteConfig{{Upstream: "app"}}}
		for _, r := range reuse {
			l.ReusePort = l.ReusePort || r == i
		}
		cfg.Listeners = append(cfg.Listeners, l)
	}
	return cfg
}

// TestValidateBindConflicts checks which listener addresses Validate
// refuses side by side, and that the error names both keys.
func TestValidateBindConflicts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs []string
		reuse []int  // indexes of listeners with reuse_port
		want  string // the error, "" for none
	}{
		{name: "IPv4 wildcard, then loopback", addrs: []string{"0.0.0.0:8443", "127.0.0.1:8443"},
			want: `listener[1].address: "127.0.0.1:8443" cannot listen beside listener[0].address = "0.0.0.0:8443": the unspecified address takes port 8443 on every address, IPv4 and IPv6 (Go listens dual-stack): the second bind would fail with "address already in use" (set reuse_port = true on both to share the port)`},
		{name: "loopback, then IPv4 wildcard", addrs: []string{"127.0.0.1:8443", "0.0.0.0:8443"},
			want: `listener[1].address: "0.0.0.0:8443" cannot listen beside listener[0].address = "127.0.0.1:8443": the unspecified address`},
		{name: "IPv4 wildcard is dual-stack", addrs: []string{"0.0.0.0:8443", "[::1]:8443"},
			want: `listener[1].address: "[::1]:8443" cannot listen beside listener[0].address = "0.0.0.0:8443"`},
		{name: "IPv6 wildcard, then IPv4", addrs: []string{"[::]:8443", "10.0.0.1:8443"},
			want: `listener[1].address: "10.0.0.1:8443" cannot listen beside listener[0].address = "[::]:8443"`},
		{name: "empty host, then IPv6", addrs: []string{":8443", "[2001:db8::1]:8443"},
			want: `listener[1].address: "[2001:db8::1]:8443" cannot listen beside listener[0].address = ":8443"`},
		{name: "wildcard beside a host name", addrs: []string{"localhost:8443", "[::]:8443"},
			want: `listener[1].address: "[::]:8443" cannot listen beside listener[0].address = "localhost:8443"`},
		{name: "same address twice", addrs: []string{"127.0.0.1:8443", "127.0.0.1:8443"},
			want: `listener[1].address: "127.0.0.1:8443" cannot listen beside listener[0].address = "127.0.0.1:8443": the same address: the second bind would fail`},
		{name: "same address, IPv4-mapped", addrs: []string{"127.0.0.1:8443", "[::ffff:127.0.0.1]:8443"},
			want: `listener[1].address: "[::ffff:127.0.0.1]:8443" cannot listen beside listener[0].address = "127.0.0.1:8443": the same address`},
		{name: "same port by service name", addrs: []string{"0.0.0.0:https", "127.0.0.1:443"},
			want: `listener[1].address: "127.0.0.1:443" cannot listen beside listener[0].address = "0.0.0.0:https"`},
		{name: "same host name twice", addrs: []string{"localhost:8443", "localhost:8443"},
			want: `listener[1].address: "localhost:8443" cannot listen beside listener[0].address = "localhost:8443": the same address`},
		{name: "third listener names the first it clashes with", addrs: []string{"127.0.0.1:1", "127.0.0.2:1", "0.0.0.0:1"},
			want: `listener[2].address: "0.0.0.0:1" cannot listen beside listener[0].address = "127.0.0.1:1"`},
		{name: "same unix path", addrs: []string{"unix:/run/sluice/s.sock", "unix:/run/sluice//s.sock"},
			want: `listener[1].address: "unix:/run/sluice//s.sock" cannot listen beside listener[0].address = "unix:/run/sluice/s.sock": the same socket path`},
		{name: "same unix path, reuse_port on both", addrs: []string{"unix:/run/s.sock", "unix:/run/s.sock"}, reuse: []int{0, 1},
			want: `listener[1].address: "unix:/run/s.sock" cannot listen beside listener[0].address = "unix:/run/s.sock": the same socket path`},
		{name: "reuse_port on one only", addrs: []string{"127.0.0.1:8443", "127.0.0.1:8443"}, reuse: []int{1},
			want: `listener[1].address: "127.0.0.1:8443" cannot listen beside listener[0].address = "127.0.0.1:8443"`},

		{name: "reuse_port on both, same address", addrs: []string{"127.0.0.1:8443", "127.0.0.1:8443"}, reuse: []int{0, 1}},
		{name: "reuse_port on both, wildcard and loopback", addrs: []string{"0.0.0.0:8443", "127.0.0.1:8443"}, reuse: []int{0, 1}},
		{name: "different ports", addrs: []string{"0.0.0.0:8443", "127.0.0.1:8444"}},
		{name: "IPv4 and IPv6 loopback", addrs: []string{"127.0.0.1:8443", "[::1]:8443"}},
		{name: "two IPv4 addresses", addrs: []string{"127.0.0.1:8443", "127.0.0.2:8443"}},
		{name: "port 0 twice", addrs: []string{"0.0.0.0:0", "127.0.0.1:0"}},
		{name: "host name beside an address", addrs: []string{"localhost:8443", "127.0.0.1:8443"}},
		{name: "different unix paths", addrs: []string{"unix:/run/a.sock", "unix:/run/b.sock"}},
		{name: "unix path and TCP", addrs: []string{"unix:/run/a.sock", "0.0.0.0:8443"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := listeners(tc.addrs, tc.reuse...).Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("Validate accepted the listeners, want %q", tc.want)
			case tc.want != "" && !strings.HasPrefix(err.Error(), tc.want):
				t.Errorf("Validate:\n got %q\nwant %q", err, tc.want)
			}
			var fe *FieldError
			if err != nil && (!errors.As(err, &fe) || strings.Contains(fe.Error(), "\n")) {
				t.Errorf("Validate = %q, want one *FieldError", err)
			}
		})
	}
}

// TestBindConflictMatchesKernel binds pairs of addresses for real, through
// listen, with reuse_port on neither, one or both, and checks that conflict
// predicts exactly the pairs the kernel refuses.
func TestBindConflictMatchesKernel(t *testing.T) {
	hosts := []string{"0.0.0.0", "[::]", "", "127.0.0.1", "127.0.0.2", "[::ffff:127.0.0.1]"}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		hosts = append(hosts, "[::1]")
	} else {
		t.Logf("no IPv6 loopback, pairs with [::1] skipped: %v", err)
	}
	for _, first := range hosts {
		for _, second := range hosts {
			for _, reuse := range [][2]bool{{false, false}, {true, false}, {true, true}} {
				name := fmt.Sprintf("%s then %s, reuse_port %v", first, second, reuse)
				t.Run(name, func(t *testing.T) {
					// The first bind's port was free on every address
					// (listenFreePort), but a socket elsewhere on the
					// machine (a parallel test's connection, say) may take
					// it on another before the second bind, which, if a
					// wildcard, then meets it. That refusal is not the
					// pair's: try another port. A model that refuses what
					// the kernel allows, or allows what it refuses on every
					// port, fails.
					for try := 1; ; try++ {
						why, err := bindPair(t, first, second, reuse)
						kernel := err != nil
						if kernel == (why != "") {
							return
						}
						if !kernel || try == 3 {
							t.Fatalf("kernel refused the second bind: %v (%v); conflict says %q", kernel, err, why)
						}
						t.Logf("kernel refused the second bind (%v), conflict says none: another port", err)
					}
				})
			}
		}
	}
}

// bindPair listens on first with a port of the kernel's choice, then on
// second with the same port, and returns what conflict says of the pair
// and the second listen's error (nil or EADDRINUSE).
func bindPair(t *testing.T, first, second string, reuse [2]bool) (string, error) {
	t.Helper()
	ctx := context.Background()
	a, port := listenFreePort(t, first, reuse[0])
	defer a.Close()
	b, err := listen(ctx, second+":"+port, reuse[1], SocketOptions{})
	if err == nil {
		b.Close()
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second listen: %v", err)
	}
	pa, _ := parseBindAddr(first + ":" + port)
	pb, _ := parseBindAddr(second + ":" + port)
	return conflict(pa, pb, reuse[0] && reuse[1]), err
}

// listenFreePort listens on host at a port that no socket on any address
// holds: the kernel's choice for a wildcard listener, given up at once.
// The kernel's choice for host itself may be held on another address, by
// one of the thousands of TIME_WAIT sockets a benchmark leaves on
// 127.0.0.1, and a wildcard second bind would then meet that socket, not
// the first. Another socket may take the port in between: try again.
func listenFreePort(t *testing.T, host string, reuse bool) (net.Listener, string) {
	t.Helper()
	for try := 1; ; try++ {
		probe, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(probe.Addr().(*net.TCPAddr).Port)
		probe.Close()
		ln, err := listen(context.Background(), host+":"+port, reuse, SocketOptions{})
		if err == nil {
			return ln, port
		}
		if !errors.Is(err, syscall.EADDRINUSE) || try == 5 {
			t.Fatal(err)
		}
	}
}

// TestCheckUnixPath checks the sun_path limit at its edge, for listeners
// and upstream servers.
func TestCheckUnixPath(t *testing.T) {
	dir := "/" + strings.Repeat("d", 99) + "/" // 101 bytes
	for _, tc := range []struct {
		name, path, want string
	}{
		{name: "107 bytes", path: dir + "sluice"},
		{name: "108 bytes", path: dir + "sluice7",
			want: "socket path is 108 bytes, longer than the 107 a unix socket address holds"},
		{name: "abstract, 108 bytes", path: "@" + strings.Repeat("a", 107)},
		{name: "abstract, 109 bytes", path: "@" + strings.Repeat("a", 108),
			want: "socket path is 109 bytes, longer than the 108 a unix socket address holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := listeners([]string{"unix:" + tc.path})
			cfg.Upstreams[0].Servers = []string{"unix:" + tc.path}
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			for _, want := range []string{
				`listener[0].address: invalid address "unix:` + tc.path + `": ` + tc.want,
				`upstream[0].servers[0]: invalid server address "unix:` + tc.path + `": ` + tc.want,
			} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Validate = %v, want %q", err, want)
				}
			}
		})
	}
}

// TestUnixPathLimitMatchesKernel binds unix sockets at paths of 100 to 112
// bytes: checkUnixPath accepts exactly those the kernel does.
func TestUnixPathLimitMatchesKernel(t *testing.T) {
	dir := t.TempDir()
	if len(dir) > 90 {
		t.Skipf("temporary directory %s is too long", dir)
	}
	for n := 100; n <= 112; n++ {
		path := dir + "/" + strings.Repeat("s", n-len(dir)-1)
		ln, err := net.Listen("unix", path)
		if err == nil {
			ln.Close()
		}
		if kernel, check := err == nil, checkUnixPath(path) == nil; kernel != check {
			t.Errorf("%d-byte path: bind error %v, but checkUnixPath accepts it: %v", n, err, check)
		}
	}
}
