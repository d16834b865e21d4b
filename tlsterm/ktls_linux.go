package tlsterm

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// setsockopt names of include/uapi/linux/tls.h, which x/sys/unix lacks
// (it has SOL_TLS, 282, and TCP_ULP).
const (
	tlsTX = 1
	tlsRX = 2
)

// ProbeKernelTLS reports whether the kernel attaches its TLS ULP to a TCP
// connection: nil if it does, else an error wrapping ErrNoKernelTLS and
// the errno. It opens a loopback connection, so call it once at startup
// and keep the answer.
func ProbeKernelTLS() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if ln, err = net.Listen("tcp", "[::1]:0"); err != nil {
			return fmt.Errorf("probe kernel tls: listen: %w", err)
		}
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("probe kernel tls: dial: %w", err)
	}
	defer c.Close()
	// The kernel finished the TCP handshake before Dial returned, so this
	// does not block; the ULP is only accepted on an established socket.
	s, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("probe kernel tls: accept: %w", err)
	}
	defer s.Close()
	return attachULP(c.(*net.TCPConn))
}

// InstallKernelTLS attaches the TLS ULP to conn's socket and gives the
// kernel k.TX and then k.RX. Until TLS_TX succeeds the socket is unchanged
// for userspace (an error wraps ErrNoKernelTLS: fall back); once it has,
// an error wraps ErrKernelTLSHalfInstalled and the socket must be closed.
func InstallKernelTLS(conn syscall.Conn, k *KernelKeys) error {
	if err := attachULP(conn); err != nil {
		return err
	}
	if err := setsockopt(conn, unix.SOL_TLS, tlsTX, k.TX.Marshal()); err != nil {
		return fmt.Errorf("%w: setsockopt TLS_TX: %w", ErrNoKernelTLS, err)
	}
	if err := setsockopt(conn, unix.SOL_TLS, tlsRX, k.RX.Marshal()); err != nil {
		return fmt.Errorf("%w: setsockopt TLS_RX: %w", ErrKernelTLSHalfInstalled, err)
	}
	return nil
}

func attachULP(conn syscall.Conn) error {
	err := setsockopt(conn, unix.SOL_TCP, unix.TCP_ULP, []byte("tls"))
	switch {
	case errors.Is(err, unix.ENOENT):
		// The tls module is not loaded, and the kernel loads it on demand
		// only for callers with CAP_NET_ADMIN (or it has no CONFIG_TLS).
		return fmt.Errorf("%w: setsockopt TCP_ULP tls: %w (tls module not loaded)", ErrNoKernelTLS, err)
	case err != nil:
		return fmt.Errorf("%w: setsockopt TCP_ULP tls: %w", ErrNoKernelTLS, err)
	}
	return nil
}

// setsockopt passes val with exactly its length, which the kernel checks
// against the struct size.
func setsockopt(conn syscall.Conn, level, opt int, val []byte) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("syscall conn: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), level, opt, string(val))
	}); err != nil {
		return fmt.Errorf("control: %w", err)
	}
	return serr
}
