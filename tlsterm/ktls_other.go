//go:build !linux

package tlsterm

import (
	"fmt"
	"runtime"
	"syscall"
)

// ProbeKernel reports that only Linux has kernel TLS.
func ProbeKernel() *KernelTLS {
	return &KernelTLS{Err: fmt.Errorf("%w on %s", ErrNoKernelTLS, runtime.GOOS)}
}

// ProbeKernelTLS reports that only Linux has kernel TLS.
func ProbeKernelTLS() error { return ProbeKernel().Err }

// InstallKernelTLS reports that only Linux has kernel TLS.
func InstallKernelTLS(conn syscall.Conn, k *KernelKeys) error {
	return fmt.Errorf("%w on %s", ErrNoKernelTLS, runtime.GOOS)
}

func sendRecord(rc syscall.RawConn, typ byte, b []byte) error {
	return fmt.Errorf("%w on %s", ErrNoKernelTLS, runtime.GOOS)
}

func recvRecord(rc syscall.RawConn, buf []byte, wait bool) (byte, int, error) {
	return 0, 0, fmt.Errorf("%w on %s", ErrNoKernelTLS, runtime.GOOS)
}

func setKey(conn syscall.Conn, rx bool, ci *CryptoInfo) error {
	return fmt.Errorf("%w on %s", ErrNoKernelTLS, runtime.GOOS)
}

func readFailure(err error) (bool, error) { return false, err }
