package l4

import (
	"crypto/tls"
	"errors"
	"net"

	"sluice/tlsterm"
)

var errPrefixLeft = errors.New("bytes read with the PROXY header are left after the handshake")

// handOver gives a terminated connection's record layer to the kernel,
// when its listener and the connection allow, and returns the connection
// to relay: the kernel's, or cur, the *tls.Conn, which the relay then
// runs in userspace. An error means the socket is lost to both (the
// kernel refused the second key after taking the first) and must be
// aborted. Either way the layer is recorded for the access line and the
// metrics.
func (c *conn) handOver(cur net.Conn) (net.Conn, error) {
	kc, err := c.kernelConn(cur)
	if errors.Is(err, tlsterm.ErrKernelTLSHalfInstalled) {
		return nil, err
	}
	if kc == nil {
		c.layer = layerUserspace
		c.srv.meter.recordLayerChosen(c.fallback)
		return cur, nil
	}
	c.layer, c.kernel = layerKernel, kc
	c.srv.meter.recordLayerChosen("")
	return kc, nil
}

// kernelConn tries the hand-over: nil and the reason in c.fallback when
// the connection stays in userspace.
func (c *conn) kernelConn(cur net.Conn) (*tlsterm.KernelConn, error) {
	rec := c.rec
	c.rec = nil
	switch {
	case c.srv.ktls == nil:
		c.fallback = fallbackOff
		return nil, nil
	case c.srv.ktls.Err != nil || rec == nil:
		// No kernel TLS at all, or a socket that is not TCP.
		c.fallback = fallbackUnavailable
		return nil, nil
	}
	tc := cur.(*tls.Conn)
	keys, err := rec.Prepare(tc.ConnectionState(), c.pre)
	if err == nil && c.tr.Buffered() > 0 {
		// Bytes read past a PROXY header that crypto/tls has not taken:
		// the kernel would never see them.
		c.fallback, c.fallbackErr = tlsterm.FallbackBuffered, errPrefixLeft
		return nil, nil
	}
	if err == nil {
		err = c.srv.ktls.Supports(keys)
	}
	if err == nil {
		var kc *tlsterm.KernelConn
		if kc, err = tlsterm.HandOver(c.raw.(*net.TCPConn), keys); err == nil {
			return kc, nil
		}
	}
	c.fallback, c.fallbackErr = tlsterm.FallbackReason(err), err
	return nil, err
}
