package l4

import (
	"errors"
	"io"
	"syscall"
)

// Load balancers check that sluice accepts connections by opening one
// and hanging up: a bare connect-and-close, or HAProxy's send-proxy-v2
// checks, a PROXY header (LOCAL) and then a reset. From a trusted proxy,
// such a connection is a health check: counted apart and logged at debug,
// so that checks every second from every balancer do not fill the access
// log with failed handshakes.

// errHungUp: the peer closed or reset the connection before it sent a
// byte.
var errHungUp = errors.New("closed before sending a byte")

// hungUp reports whether err says the peer closed (EOF, not a cut-short
// read) or reset the connection.
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, errHungUp)
}

// countingReader counts the bytes read through it, and keeps the last
// error: go-proxyproto reports a peer that hung up as "no PROXY header".
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}
