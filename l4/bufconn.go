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

// Read drains the buffer first; once it is empty, bufio reads large
// requests straight from the connection.
func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the underlying connection.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
