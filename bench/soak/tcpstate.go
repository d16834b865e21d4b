package main

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// errResetAsEOF is a reset that a read saw as an end of stream, because a
// write on the same socket took its error first.
var errResetAsEOF = fmt.Errorf("end of stream on a socket the peer reset (a write took the error): %w", syscall.ECONNRESET)

// inStateClose reports whether the kernel has c in TCP_CLOSE.
func inStateClose(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var state uint8
	rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			state = info.State
		}
	})
	return state == unix.BPF_TCP_CLOSE
}
