package tlsterm

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
)

// TestProbeKernelTLS reports what this kernel has. Without the TLS ULP the
// answer must be ErrNoKernelTLS with the errno, and the install must fail
// before changing anything: the socket still carries plain bytes.
func TestProbeKernelTLS(t *testing.T) {
	err := ProbeKernelTLS()
	t.Logf("ProbeKernelTLS: %v", err)
	if err == nil {
		t.Skip("this kernel has the TLS ULP; the qemu tests exercise it")
	}
	var errno syscall.Errno
	if !errors.Is(err, ErrNoKernelTLS) || !errors.As(err, &errno) {
		t.Fatalf("want ErrNoKernelTLS and an errno, got %v", err)
	}

	ln := listen(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c := dial(t, ln)
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { s.Close() })
	keys := &KernelKeys{TX: CryptoInfo{Version: 0x0304, CipherType: tlsCipherAESGCM128, IV: make([]byte, 8), Key: make([]byte, 16), Salt: make([]byte, 4)}}
	keys.RX = keys.TX
	err = InstallKernelTLS(c.(*net.TCPConn), keys)
	t.Logf("InstallKernelTLS: %v", err)
	if !errors.Is(err, ErrNoKernelTLS) || errors.Is(err, ErrKernelTLSHalfInstalled) {
		t.Fatalf("want ErrNoKernelTLS, got %v", err)
	}
	if _, err := c.Write([]byte("plain")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "plain" {
		t.Fatalf("after the failed install: %q, %v", got, err)
	}
}
