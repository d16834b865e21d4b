package l4

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// envBenchClients makes the test binary a client process (see TestMain):
// "ADDR N tls|plain".
const envBenchClients = "SLUICE_BENCH_CLIENTS"

// BenchmarkIdleSluiceMemory is BenchmarkIdleConnMemory with the clients in
// a process of their own, as in bench's S4: what the process measures is
// sluice and its backend (the same plain echo server in every case). With
// "-kernel" the record layer went to the kernel (where it has TLS: make
// test-ktls runs this there), with "-userspace" it stayed in crypto/tls.
//
//	go test -run '^$' -bench IdleSluiceMemory -benchtime 3000x ./l4
func BenchmarkIdleSluiceMemory(b *testing.B) {
	for _, tc := range []struct {
		name string
		tls  bool
		ktls string
	}{
		{"plain", false, ""},
		{"tls-kernel", true, KTLSAuto},
		{"tls-userspace", true, KTLSOff},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w := newWorld(b)
			be := newBenchBackend(b)
			cfg := w.simple(be.Addr().String())
			if tc.tls {
				cfg.Listeners[0].TLS.KTLS = tc.ktls
			} else {
				cfg.Listeners[0].TLS = nil
			}
			p, addrs := w.serve(cfg)
			for _, s := range p.gen.servers {
				s.ParkAfter = 10 * time.Millisecond
			}
			n := b.N
			raiseNoFile(b, uint64(4*n+1024))
			before := memNow()

			kind := "plain"
			if tc.tls {
				kind = "tls"
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %s", envBenchClients, addrs[0], n, kind))
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer cmd.Wait()
			defer stdin.Close()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || line != "ready\n" {
				b.Fatalf("client process: %q, %v", line, err)
			}
			waitIdle(b, be, p, n)
			reportMem(b, before, n)
			if tc.tls {
				layer := "userspace"
				if tc.ktls == KTLSAuto && kernelTLS() {
					layer = "kernel"
				}
				b.Logf("record layer: %s", layer)
			}
		})
	}
}

// benchClients opens the connections spec asks for, each with one small
// echo, says "ready" and holds them until its stdin closes.
func benchClients(spec string) int {
	var addr, kind string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %d %s", &addr, &n, &kind); err != nil {
		fmt.Fprintln(os.Stderr, "bench clients:", err)
		return 2
	}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench clients:", err)
			return 1
		}
		if kind == "tls" {
			// Only sluice's memory is measured: the client need not check.
			c = tls.Client(c, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			fmt.Fprintln(os.Stderr, "bench clients:", err)
			return 1
		}
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			fmt.Fprintln(os.Stderr, "bench clients:", err)
			return 1
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return 0
}
