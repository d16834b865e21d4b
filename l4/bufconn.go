package l4

import (
	"bufio"
	"net"
)

// bufferedConn replays bytes a bufio.Reader read ahead of a header, then
// reads the connection itself. It keeps CloseWrite and CloseRead, which a
// plain embedding of net.Conn would hide, so half-close still reaches the
// socket beneath (directly, or through a *tls.Conn on top of it).
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

// Read drains the buffer first, then reads the connection itself and lets
// the reader (and its 4 KiB) go: a long-lived connection should not keep it.
// Reads come from one goroutine at a time, as for any net.Conn reader.
func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r != nil && c.r.Buffered() > 0 {
		return c.r.Read(p) // only what is buffered; no read of its own
	}
	c.r = nil
	return c.Conn.Read(p)
}

// CloseWrite half-closes the underlying connection.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
