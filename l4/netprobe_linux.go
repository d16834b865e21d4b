package l4

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// probePair returns the two ends of a stream socket pair: the first in
// Go's netpoller, the second a non-blocking descriptor.
func probePair() (net.Conn, int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, -1, fmt.Errorf("l4: probe socket pair: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "sluice-netprobe")
	c, err := net.FileConn(f) // a descriptor of its own
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, -1, fmt.Errorf("l4: probe socket pair: %w", err)
	}
	return c, fds[1], nil
}

func probeWrite(fd int) error {
	_, err := unix.Write(fd, []byte{0})
	return err
}

func probeClose(fd int) { unix.Close(fd) }
