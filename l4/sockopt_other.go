//go:build !linux

package l4

import "time"

// setDeferAccept does nothing: TCP_DEFER_ACCEPT is Linux's. (FreeBSD's
// accept filters are the nearest thing.)
func setDeferAccept(fd int, d time.Duration) error { return nil }

// KernelBufferLimits reports the limits unknown.
func KernelBufferLimits() BufferLimits { return BufferLimits{} }
