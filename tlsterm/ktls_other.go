//go:build !linux

package tlsterm

import (
	"fmt"
	"runtime"
	"syscall"
)

// ProbeKernelTLS reports that only Linux has kernel TLS.
func ProbeKernelTLS() error {
	return fmt.Errorf("%w on %s", ErrNoKernelTLS, runtime.GOOS)
}

// InstallKernelTLS reports that only Linux has kernel TLS.
func InstallKernelTLS(conn syscall.Conn, k *KernelKeys) error {
	return fmt.Errorf("%w on %s", ErrNoKernelTLS, runtime.GOOS)
}
