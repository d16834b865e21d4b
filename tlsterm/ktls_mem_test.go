//go:build linux

package tlsterm

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkKernelTLSIdleMemory holds b.N idle TLS 1.3 AES-128-GCM
// connections over loopback (tickets on: the server sends one
// NewSessionTicket) and reports what each costs once idle, after a GC:
//
//   - heap-B/conn: the Go heap (runtime.MemStats.HeapAlloc delta);
//   - rss-B/conn: the process's resident memory (VmRSS delta), which also
//     holds goroutine stacks, runtime metadata and heap not yet returned;
//   - slab-B/conn: the kernel's slab caches (Slab of /proc/meminfo, whole
//     machine), where sockets and kTLS contexts live.
//
// userspace keeps the server's *tls.Conn after the handshake, as sluice
// does today. kernel hands each connection to the kernel (RecordConn,
// WithKeyLog, Prepare, InstallKernelTLS) and keeps only the raw
// *net.TCPConn: the *tls.Conn, the RecordConn and the key log become
// garbage.
//
// The clients live in this process and in this kernel, and are the same in
// both: a *tls.Conn kept per connection, which never reads (so the ticket
// stays in its socket's receive queue). Every number therefore includes the
// client side and both sockets; the difference between kernel and
// userspace is the server's cost alone. No goroutine reads either side:
// sluice's per-connection goroutines and buffers are not counted.
//
// Run it with a fixed count, e.g. -test.benchtime=3000x; it needs two file
// descriptors per connection and raises RLIMIT_NOFILE when it can. It skips
// where the kernel has no TLS ULP (.ci/ktls-vm.sh runs it).
func BenchmarkKernelTLSIdleMemory(b *testing.B) {
	if err := ProbeKernelTLS(); err != nil {
		b.Skip(err)
	}
	cert, pool := testCert(b)
	for _, mode := range []struct {
		name   string
		kernel bool
	}{{"userspace", false}, {"kernel", true}} {
		b.Run(mode.name, func(b *testing.B) {
			benchIdleMemory(b, cert, pool, mode.kernel)
		})
	}
}

func benchIdleMemory(b *testing.B, cert tls.Certificate, pool *x509.CertPool, kernel bool) {
	raiseNoFile(b, uint64(2*b.N+64))
	srvBase := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	srvCfg := srvBase
	if kernel {
		srvCfg = WithKeyLog(srvBase)
	}
	cli := &tls.Config{
		RootCAs:            pool,
		ServerName:         "localhost",
		MinVersion:         tls.VersionTLS13,
		ClientSessionCache: tls.NewLRUClientSessionCache(4), // so that the server sends a ticket
	}
	ln := listen(b)

	var (
		clients    = make([]*tls.Conn, 0, b.N)
		clientRaws = make([]net.Conn, 0, b.N)
		servers    = make([]*tls.Conn, 0, b.N) // userspace
		raws       = make([]*net.TCPConn, 0, b.N)
	)
	defer func() {
		for _, c := range clientRaws {
			c.Close()
		}
		for _, c := range raws {
			c.Close()
		}
	}()

	before := measureMem(b)
	b.ResetTimer()
	for range b.N {
		type accepted struct {
			tc  *tls.Conn
			raw *net.TCPConn
			err error
		}
		done := make(chan accepted, 1)
		go func() {
			var a accepted
			defer func() { done <- a }()
			c, err := ln.Accept()
			if err != nil {
				a.err = err
				return
			}
			a.raw = c.(*net.TCPConn)
			c.SetDeadline(time.Now().Add(testTimeout))
			if !kernel {
				a.tc = tls.Server(c, srvCfg)
				a.err = a.tc.Handshake()
				return
			}
			rc := NewRecordConn(c)
			tc := tls.Server(rc, srvCfg)
			if a.err = tc.Handshake(); a.err != nil {
				return
			}
			cs := tc.ConnectionState()
			if cs.CipherSuite != tls.TLS_AES_128_GCM_SHA256 {
				a.err = fmt.Errorf("negotiated %s", tls.CipherSuiteName(cs.CipherSuite))
				return
			}
			keys, err := rc.Prepare(cs, 0)
			if err != nil {
				a.err = err
				return
			}
			if keys.TX.Seq != 1 {
				a.err = fmt.Errorf("TX seq %d, want 1 (one ticket)", keys.TX.Seq)
				return
			}
			a.err = InstallKernelTLS(a.raw, keys)
			// tc, rc and the key log are dropped here.
		}()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		clientRaws = append(clientRaws, conn)
		c := tls.Client(conn, cli)
		if err := c.Handshake(); err != nil {
			b.Fatal(err)
		}
		a := <-done
		if a.raw != nil {
			raws = append(raws, a.raw)
		}
		if a.err != nil {
			b.Fatalf("server: %v", a.err)
		}
		// Idle from now on: no deadlines left to fire.
		conn.SetDeadline(time.Time{})
		a.raw.SetDeadline(time.Time{})
		clients = append(clients, c)
		if !kernel {
			servers = append(servers, a.tc)
		}
	}
	b.StopTimer()
	after := measureMem(b)
	runtime.KeepAlive(clients)
	runtime.KeepAlive(servers)
	runtime.KeepAlive(raws)

	n := float64(b.N)
	b.ReportMetric(float64(int64(after.heap)-int64(before.heap))/n, "heap-B/conn")
	b.ReportMetric(float64(after.rss-before.rss)/n, "rss-B/conn")
	b.ReportMetric(float64(after.slab-before.slab)/n, "slab-B/conn")
}

type memSample struct {
	heap      uint64 // Go heap bytes in use
	rss, slab int64  // bytes
}

// measureMem collects garbage, returns freed pages to the OS (so that heap
// freed earlier is not reused unseen by the RSS delta), and reads the three
// numbers.
func measureMem(b *testing.B) memSample {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, err := procKB("/proc/self/status", "VmRSS:")
	if err != nil {
		b.Fatal(err)
	}
	slab, err := procKB("/proc/meminfo", "Slab:")
	if err != nil {
		b.Fatal(err)
	}
	return memSample{heap: ms.HeapAlloc, rss: rss << 10, slab: slab << 10}
}

// procKB reads the "key   N kB" line of a /proc file.
func procKB(path, key string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == key {
			return strconv.ParseInt(string(f[1]), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}

// raiseNoFile raises RLIMIT_NOFILE to at least need (the hard limit too,
// which takes root, as in the VM).
func raiseNoFile(b *testing.B, need uint64) {
	b.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	lim.Cur = need
	lim.Max = max(lim.Max, need)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("RLIMIT_NOFILE to %d: %v", need, err)
	}
}
