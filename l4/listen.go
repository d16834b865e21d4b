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
// socket file (one nobody accepts on) is removed first. The listener
// applies so to the sockets it accepts; on a unix socket only the buffer
// sizes apply.
func listen(ctx context.Context, address string, reusePort bool, so SocketOptions) (net.Listener, error) {
	if path, ok := strings.CutPrefix(address, "unix:"); ok {
		if err := removeStaleSocket(ctx, path); err != nil {
			return nil, err
		}
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "unix", path)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		return &unixListener{UnixListener: ln.(*net.UnixListener), so: so}, nil
	}
	keepAlive := so.keepAlive()
	var inherits bool // accepted sockets inherit keepalive
	lc := net.ListenConfig{
		// Buffer sizes, TCP_DEFER_ACCEPT and keepalive go on the
		// listening socket: accepted TCP sockets inherit the sizes, early
		// enough for the window scale in the SYN-ACK to follow them, and
		// on Linux the keepalive settings.
		Control: func(_, _ string, c syscall.RawConn) error {
			return control(c, func(fd int) error {
				if reusePort {
					if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
						return fmt.Errorf("set SO_REUSEPORT: %w", err)
					}
				}
				if err := so.setBuffers(fd); err != nil {
					return err
				}
				if so.DeferAccept > 0 {
					if err := setDeferAccept(fd, so.DeferAccept); err != nil {
						return err
					}
				}
				var err error
				inherits, err = setListenerKeepAlive(fd, keepAlive)
				return err
			})
		},
	}
	// Keepalive is the listener's to set, not net's on each accepted
	// socket, so that a reload can change it (adopt).
	lc.KeepAlive = -1
	ln, err := lc.Listen(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	l := &tcpListener{TCPListener: ln.(*net.TCPListener)}
	l.setOptions(so, inherits)
	return l, nil
}

// tcpListener gives each accepted socket the TCP_NODELAY and keepalive
// settings the listening socket could not pass on, and returns the
// *net.TCPConn itself: never a wrapper, since splice(2) and half-close
// need the concrete type.
type tcpListener struct {
	*net.TCPListener
	// Read by the goroutine that accepts; set before it starts (listen,
	// adopt).
	noDelay   bool
	keepAlive net.KeepAliveConfig
	inherits  bool // accepted sockets have keepAlive from the listening socket
}

func (l *tcpListener) setOptions(so SocketOptions, inherits bool) {
	l.noDelay = !so.Nagle
	l.keepAlive = so.keepAlive()
	l.inherits = inherits
}

func (l *tcpListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	// Best effort, as in net: a socket that refuses options is dead, and
	// its first read says so. net has turned TCP_NODELAY on already.
	if !l.noDelay {
		c.SetNoDelay(false)
	}
	if l.keepAlive.Enable && !l.inherits {
		c.SetKeepAliveConfig(l.keepAlive)
	}
	return c, nil
}

// adopt gives a listener kept across a reload the socket options of the
// new configuration: those of accepted sockets from now on, and the
// listening socket's buffer sizes and TCP_DEFER_ACCEPT. No Serve may be
// accepting on ln meanwhile. Buffer sizes once set are not unset: only a
// new socket returns to the kernel's autotuning.
func adopt(ln net.Listener, so SocketOptions) error {
	switch l := ln.(type) {
	case *unixListener:
		l.so = so
		return nil
	case *tcpListener:
		rc, err := l.SyscallConn()
		if err != nil {
			return err
		}
		ka := so.keepAlive()
		var inherits bool
		err = control(rc, func(fd int) error {
			if err := so.setBuffers(fd); err != nil {
				return err
			}
			if err := setDeferAccept(fd, so.DeferAccept); err != nil {
				return err
			}
			inherits, err = setListenerKeepAlive(fd, ka)
			return err
		})
		l.setOptions(so, inherits)
		return err
	}
	return nil
}

// unixListener sets the buffer sizes on each accepted socket, since unix
// sockets, unlike TCP ones, do not inherit them from the listening socket.
// It returns the *net.UnixConn itself.
type unixListener struct {
	*net.UnixListener
	so SocketOptions // only RcvBuf and SndBuf apply
}

func (l *unixListener) Accept() (net.Conn, error) {
	c, err := l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	// Best effort, as for TCP_NODELAY.
	if l.so.RcvBuf > 0 {
		c.SetReadBuffer(l.so.RcvBuf)
	}
	if l.so.SndBuf > 0 {
		c.SetWriteBuffer(l.so.SndBuf)
	}
	return c, nil
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
