//go:build !linux

package l4

import (
	"net"
	"time"
)

// setDeferAccept does nothing: TCP_DEFER_ACCEPT is Linux's. (FreeBSD's
// accept filters are the nearest thing.)
func setDeferAccept(fd int, d time.Duration) error { return nil }

// KernelBufferLimits reports the limits unknown.
func KernelBufferLimits() BufferLimits { return BufferLimits{} }

// setListenerKeepAlive does nothing: whether accepted sockets inherit the
// keepalive timings varies, so the listener sets them on each.
func setListenerKeepAlive(fd int, ka net.KeepAliveConfig) (bool, error) { return false, nil }
