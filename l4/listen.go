package l4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// listen opens a listening socket for a configured address: "host:port" or
// "unix:/path". reusePort sets SO_REUSEPORT on TCP sockets. A stale unix
// socket file (one nobody accepts on) is removed first.
func listen(ctx context.Context, address string, reusePort bool) (net.Listener, error) {
	if path, ok := strings.CutPrefix(address, "unix:"); ok {
		if err := removeStaleSocket(ctx, path); err != nil {
			return nil, err
		}
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "unix", path)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		return ln, nil
	}
	lc := net.ListenConfig{}
	if reusePort {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set SO_REUSEPORT: %w", serr)
			}
			return nil
		}
	}
	ln, err := lc.Listen(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// removeStaleSocket deletes path if it is a unix socket that refuses
// connections, so a restart after a crash can bind again. A live socket is
// left alone (the listen then fails with "address already in use").
func removeStaleSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		c.Close()
		return nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove stale socket: %w", err)
		}
	}
	return nil
}
