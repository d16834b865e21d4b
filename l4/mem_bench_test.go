package l4

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkIdleConnMemory holds idle connections open through sluice (TLS
// to a plain backend) and reports what each costs the process: goroutine
// stacks and live heap, after a GC, per connection, and the process's RSS
// and the kernel's slab caches (where kernel TLS keeps its state). It
// measures what the S4 scenario of bench/ measures as RSS, but from
// inside, split by kind. The clients and the backend live in the process
// too, the same in every case, so the differences between cases are
// sluice's. The TLS cases hand their record layer to the kernel where it
// has TLS (make test-ktls runs this there); "-userspace" keeps it in
// crypto/tls.
//
//	go test -run '^$' -bench IdleConnMemory -benchtime 2000x ./l4
func BenchmarkIdleConnMemory(b *testing.B) {
	for _, tc := range []struct {
		name      string
		tls       bool
		echo      bool // one small round trip before going idle
		userspace bool // ktls = "off"
	}{
		{"tls-handshake-only", true, false, false},
		{"tls-after-echo", true, true, false},
		{"tls-after-echo-userspace", true, true, true},
		{"plain-after-echo", false, true, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w := newWorld(b)
			be := newBenchBackend(b)
			cfg := w.simple(be.Addr().String())
			if !tc.tls {
				cfg.Listeners[0].TLS = nil
			} else if tc.userspace {
				cfg.Listeners[0].TLS.KTLS = KTLSOff
			}
			raiseNoFile(b, uint64(4*b.N+1024))
			p, addrs := w.serve(cfg)
			for _, s := range p.gen.servers {
				s.ParkAfter = 10 * time.Millisecond
			}

			n := b.N
			before := openConns(b, n, func() net.Conn {
				c, err := net.Dial("tcp", addrs[0])
				if err != nil {
					b.Fatal(err)
				}
				if tc.tls {
					tc := tls.Client(c, &tls.Config{RootCAs: w.pool, ServerName: "localhost"})
					if err := tc.Handshake(); err != nil {
						b.Fatal(err)
					}
					c = tc
				}
				if tc.echo {
					c.Write([]byte("ping"))
					io.ReadFull(c, make([]byte, 4))
				}
				return c
			})
			waitIdle(b, be, p, n)
			reportMem(b, before, n)
		})
	}
}

// waitIdle waits until the backend has all n connections (the server
// side finishes its handshake and dial after the client's), and then
// until every relay direction has parked.
func waitIdle(b *testing.B, be *benchBackend, p *Proxy, n int) {
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for range n {
		select {
		case <-be.accepted:
		case <-timer.C:
			b.Fatal("backend did not get every connection")
		}
	}
	for p.parker.Parked() < 2*n {
		select {
		case <-time.After(10 * time.Millisecond):
		case <-timer.C:
			b.Fatalf("%d of %d relay directions parked", p.parker.Parked(), 2*n)
		}
	}
}

// openConns takes a memory sample, then opens n connections with open;
// they are closed when the benchmark ends, before its sluice shuts down.
func openConns(b *testing.B, n int, open func() net.Conn) memSample {
	conns := make([]net.Conn, 0, n)
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	before := memNow()
	for range n {
		conns = append(conns, open())
	}
	return before
}

// reportMem reports what each of n connections has added since before.
func reportMem(b *testing.B, before memSample, n int) {
	after := memNow()
	b.ReportMetric(float64(after.stack-before.stack)/float64(n), "stack-B/conn")
	b.ReportMetric(float64(after.heap-before.heap)/float64(n), "heap-B/conn")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/conn")
	if after.rss > 0 {
		b.ReportMetric(float64(after.rss-before.rss)/float64(n), "rss-B/conn")
		b.ReportMetric(float64(after.slab-before.slab)/float64(n), "slab-B/conn")
	}
}

type memSample struct {
	stack, heap uint64
	goroutines  int
	rss, slab   int64 // from /proc; 0 where there is none
}

func memNow() memSample {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{stack: ms.StackInuse, heap: ms.HeapAlloc, goroutines: runtime.NumGoroutine(),
		rss: procBytes("/proc/self/status", "VmRSS:"), slab: procBytes("/proc/meminfo", "Slab:")}
}

// procBytes reads the "key   N kB" line of a /proc file, in bytes; 0 if
// there is none.
func procBytes(path, key string) int64 {
	data, _ := os.ReadFile(path)
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// raiseNoFile raises RLIMIT_NOFILE to at least need where the process
// may (the hard limit takes root, as in the VM).
func raiseNoFile(b *testing.B, need uint64) {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil || lim.Cur >= need {
		return
	}
	lim.Cur, lim.Max = need, max(lim.Max, need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Logf("RLIMIT_NOFILE to %d: %v", need, err)
	}
}

// benchBackend is an echo backend that counts connections; its conns live
// in this process too, so their cost is subtracted as a plain TCP echo
// server's (one goroutine, no buffers beyond a small one).
type benchBackend struct {
	net.Listener
	accepted chan struct{}
}

func newBenchBackend(b *testing.B) *benchBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	be := &benchBackend{Listener: ln, accepted: make(chan struct{}, 1<<20)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			be.accepted <- struct{}{}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
	b.Cleanup(func() { ln.Close() })
	return be
}

// BenchmarkPhaseConnMemory holds connections in each phase before the
// relay and reports what one costs, as BenchmarkIdleConnMemory does:
//
//   - proxy_header: a client that sent part of a PROXY v2 header;
//
//   - tls_handshake: part of a ClientHello, on a terminating listener;
//
//   - client_hello_peek: part of a ClientHello, on a passthrough listener;
//
//   - client_hello_silent: nothing, on a passthrough listener (which does
//     not defer accept: its plain routes' servers may speak first);
//
//   - request_head_peek: a finished handshake and nothing since, on a
//     listener whose first route asks for a WebSocket upgrade.
//
//     go test -run '^$' -bench PhaseConnMemory -benchtime 2000x ./l4
func BenchmarkPhaseConnMemory(b *testing.B) {
	yes := true
	for _, tc := range []struct {
		name  string
		tune  func(l *ListenerConfig)
		start []byte // what the client sends; nil: a TLS handshake
	}{
		{"proxy_header", func(l *ListenerConfig) {
			l.AcceptProxy, l.TrustedProxies = true, []string{"127.0.0.1"}
		}, []byte("\r\n\r\n\x00\r\nQUIT\n")}, // the PROXY v2 signature (a partial v1 line is refused at once)
		{"tls_handshake", nil, []byte{0x16, 3, 1}},
		{"client_hello_peek", func(l *ListenerConfig) {
			l.TLS = nil
			l.Routes = []RouteConfig{{Name: "pass", Mode: "passthrough", Upstream: "app"}}
		}, []byte{0x16, 3, 1}},
		{"client_hello_silent", func(l *ListenerConfig) {
			l.TLS = nil
			l.Routes = []RouteConfig{{Name: "pass", Mode: "passthrough", Upstream: "app"}}
		}, []byte{}},
		{"request_head_peek", func(l *ListenerConfig) {
			l.Routes = append([]RouteConfig{{Name: "ws", WebSocket: &yes, Upstream: "app"}}, l.Routes...)
		}, nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w := newWorld(b)
			be := newBenchBackend(b)
			cfg := w.simple(be.Addr().String())
			l := &cfg.Listeners[0]
			l.HandshakeTimeout, l.ProxyTimeout = Duration{time.Minute}, Duration{time.Minute}
			if tc.tune != nil {
				tc.tune(l)
			}
			p, addrs := w.serve(cfg)
			s := p.gen.servers[0]

			n := b.N
			before := openConns(b, n, func() net.Conn {
				c, err := net.Dial("tcp", addrs[0])
				if err != nil {
					b.Fatal(err)
				}
				if tc.start != nil {
					c.Write(tc.start)
				} else {
					tc := tls.Client(c, &tls.Config{RootCAs: w.pool, ServerName: "localhost"})
					if err := tc.Handshake(); err != nil {
						b.Fatal(err)
					}
					c = tc
				}
				return c
			})
			// Wait until the server holds every connection (in its peek,
			// for the last case, which ends after the client's handshake).
			held := func() int64 { return s.active.Load() }
			if tc.start == nil {
				held = func() int64 { return s.peeking.Load() }
			}
			timer := time.NewTimer(testTimeout)
			defer timer.Stop()
			for held() < int64(n) {
				select {
				case <-time.After(10 * time.Millisecond):
				case <-timer.C:
					b.Fatalf("%d of %d connections held", held(), n)
				}
			}
			reportMem(b, before, n)
		})
	}
}
