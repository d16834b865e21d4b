package l4

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Default keepalive timing. Probes start after DefaultKeepAlive without a
// packet and repeat every DefaultKeepAliveInterval; after
// DefaultKeepAliveCount unanswered probes the kernel resets the
// connection. So a peer that vanished (power loss, a NAT or firewall that
// forgot the flow) is noticed within 60s + 4×15s = 2 minutes, where
// Linux's own defaults take 2h11m, and quiet long-lived connections such
// as WebSockets keep their NAT and conntrack entries alive.
const (
	DefaultKeepAlive         = 60 * time.Second
	DefaultKeepAliveInterval = 15 * time.Second
	DefaultKeepAliveCount    = 4
)

// Linux's limits on TCP_KEEPIDLE and TCP_KEEPINTVL (seconds) and on
// TCP_KEEPCNT.
const (
	maxKeepAlive      = 32767 * time.Second
	maxKeepAliveCount = 127
)

// Bounds of a configured socket buffer size: below 1k a TCP window holds
// less than one segment, and above 64m is more likely a typo than a plan.
const (
	MinBufferSize = 1 << 10
	MaxBufferSize = 64 << 20
)

// SocketOptions are the options set on the sockets of a listener or of an
// upstream. The zero value means the defaults: TCP_NODELAY on, keepalive
// after DefaultKeepAlive, the kernel's autotuned buffer sizes, no
// TCP_DEFER_ACCEPT. Options that are TCP's are skipped on unix sockets.
type SocketOptions struct {
	// Nagle clears TCP_NODELAY, so that the kernel coalesces small writes.
	// The default sets TCP_NODELAY (as net does for every TCP conn): a
	// relay should send what it was given at once.
	Nagle bool
	// KeepAlive is how long a connection may be silent before keepalive
	// probes start. Zero means DefaultKeepAlive; negative turns keepalive
	// off. Linux counts it in whole seconds, rounded up.
	KeepAlive time.Duration
	// KeepAliveInterval is the time between unanswered probes (zero:
	// DefaultKeepAliveInterval, whole seconds as KeepAlive), and
	// KeepAliveCount how many go unanswered before the kernel resets the
	// connection (zero: DefaultKeepAliveCount).
	KeepAliveInterval time.Duration
	KeepAliveCount    int
	// RcvBuf and SndBuf set SO_RCVBUF and SO_SNDBUF, in bytes. Zero leaves
	// the kernel default, which autotunes each socket's buffers within
	// net.ipv4.tcp_rmem and tcp_wmem; setting a size turns autotuning off
	// for that socket. Linux doubles the value (the extra half is for its
	// bookkeeping) and caps it at net.core.rmem_max and wmem_max. Setting
	// them caps the kernel memory each connection can hold, which matters
	// at 100k connections; too small a receive buffer caps throughput at
	// about rcvbuf per round trip.
	RcvBuf, SndBuf int
	// DeferAccept sets TCP_DEFER_ACCEPT on a listening socket (Linux only):
	// the kernel hands a connection to accept once the client has sent
	// data, or after about this long (whole seconds, rounded up). Zero:
	// off. Only for protocols in which the client speaks first.
	DeferAccept time.Duration
}

// BufferLimits are the kernel's caps on SO_RCVBUF and SO_SNDBUF
// (net.core.rmem_max and wmem_max); zero means unknown.
type BufferLimits struct{ RcvMax, SndMax int }

// warnBufferCaps logs, naming the key at path, each buffer size that the
// kernel will silently cut down to its limit.
func warnBufferCaps(logger *slog.Logger, path string, o SocketOptions, lim BufferLimits) {
	for _, b := range []struct {
		key, sysctl string
		size, max   int
	}{
		{"rcvbuf", "net.core.rmem_max", o.RcvBuf, lim.RcvMax},
		{"sndbuf", "net.core.wmem_max", o.SndBuf, lim.SndMax},
	} {
		if b.size > 0 && b.max > 0 && b.size > b.max {
			logger.Warn("socket buffer size above the kernel's limit; the kernel caps it there (raise "+b.sysctl+" to allow it)",
				"key", path+"."+b.key, "size", b.size, "limit", b.max)
		}
	}
}

// keepAlive returns the keepalive settings o asks for; Enable is false
// when keepalive is off.
func (o SocketOptions) keepAlive() net.KeepAliveConfig {
	if o.KeepAlive < 0 {
		return net.KeepAliveConfig{}
	}
	return net.KeepAliveConfig{
		Enable:   true,
		Idle:     cmp.Or(o.KeepAlive, DefaultKeepAlive),
		Interval: cmp.Or(o.KeepAliveInterval, DefaultKeepAliveInterval),
		Count:    cmp.Or(o.KeepAliveCount, DefaultKeepAliveCount),
	}
}

// setBuffers sets SO_RCVBUF and SO_SNDBUF on fd, those of them that o sets.
func (o SocketOptions) setBuffers(fd int) error {
	if o.RcvBuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, o.RcvBuf); err != nil {
			return fmt.Errorf("set SO_RCVBUF %d: %w", o.RcvBuf, err)
		}
	}
	if o.SndBuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, o.SndBuf); err != nil {
			return fmt.Errorf("set SO_SNDBUF %d: %w", o.SndBuf, err)
		}
	}
	return nil
}

// control runs set on c's descriptor, as the Control func of a
// net.ListenConfig or net.Dialer does, and returns the error of either.
func control(c syscall.RawConn, set func(fd int) error) error {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = set(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// dialer returns the Dialer an Upstream uses when none is injected, with o
// applied: buffer sizes before connect (the window scale offered in the SYN
// follows the receive buffer) and Nagle's algorithm, if asked for, once
// connected (net turns TCP_NODELAY on then, so earlier would be
// overwritten). Keepalive is the caller's, once the connection has lived
// a while (see keepAliveLater).
func (o SocketOptions) dialer() Dialer {
	d := &socketDialer{Dialer: net.Dialer{KeepAlive: -1}, noDelay: !o.Nagle}
	if o.RcvBuf > 0 || o.SndBuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error { return control(c, o.setBuffers) }
	}
	return d
}

// socketDialer is a net.Dialer that sets TCP_NODELAY after connecting. It
// returns the *net.TCPConn itself, never a wrapper.
type socketDialer struct {
	net.Dialer
	noDelay bool
}

func (d *socketDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && !d.noDelay {
		// Best effort, as in net: a socket that refuses options is dead,
		// and its first write says so. net has turned TCP_NODELAY on.
		tc.SetNoDelay(false)
	}
	return c, nil
}

// Size is a byte count, as nginx writes them: an integer (65536) or a
// string with an optional k or m suffix for KiB or MiB ("64k", "1m").
type Size int

// UnmarshalTOML decodes an integer or a size string.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("invalid size %d: must not be negative", v)
		}
		if v > maxSize {
			return fmt.Errorf("invalid size %d: too large: expected at most \"64m\"", v)
		}
		*s = Size(v)
		return nil
	case string:
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		*s = Size(n)
		return nil
	}
	return fmt.Errorf("invalid size %v: expected a byte count such as 65536, \"64k\" or \"1m\"", v)
}

// maxSize bounds a parsed size: socket options are C ints.
const maxSize = 1<<31 - 1

// ParseSize parses a size such as "65536", "64k" or "1m" (k and m are KiB
// and MiB, either case).
func ParseSize(s string) (int, error) {
	digits, mult := s, int64(1)
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		digits, mult = s[:len(s)-1], 1<<10
	case strings.HasSuffix(s, "m"), strings.HasSuffix(s, "M"):
		digits, mult = s[:len(s)-1], 1<<20
	}
	// Digits only: ParseInt would take a sign too.
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, fmt.Errorf("invalid size %q: expected a byte count such as 65536, \"64k\" or \"1m\"", s)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > maxSize/mult {
		return 0, fmt.Errorf("invalid size %q: too large: expected at most \"64m\"", s)
	}
	return int(n * mult), nil
}
