package splice

import (
	"errors"
	"io"
	"net"
)

// End says how one peer's stream ended, as the relay saw it. An abort must
// reach the other side as an abort: a receiver that sees a clean end after
// a reset cannot tell a truncated stream from a complete one.
type End string

// The ways a peer's stream can end.
const (
	// EndClosed: a clean end of stream (a TCP FIN; on TLS, close_notify).
	// The relay half-closes the other side the same way.
	EndClosed End = "closed"
	// EndTruncated: a TLS peer's TCP stream ended without close_notify,
	// which TLS counts as a truncation. Many clients close like this at
	// the end of an ordinary exchange, so the relay passes it on as a FIN
	// (see Relay), and reports it.
	EndTruncated End = "truncated"
	// EndReset: the peer reset the connection (ECONNRESET, EPIPE).
	EndReset End = "reset"
	// EndError: another error on the peer's connection (a TLS alert, say).
	EndError End = "error"
	// EndCut: the peer had not ended when the relay did: the relay cut it
	// (after the other side failed, a timeout, or a cancellation).
	EndCut End = "cut"
)

// clean reports whether e passes on as a half-close rather than an abort.
func (e End) clean() bool { return e == EndClosed || e == EndTruncated }

// endOf classifies the error that stopped a read from, or a write to, a
// peer. Errors from our own closing of the conn, and timeouts, are not the
// peer's doing: they give "" and the caller decides.
func endOf(err error) End {
	switch {
	case err == nil:
		return ""
	case err == io.EOF:
		return EndClosed
	case errors.Is(err, io.ErrUnexpectedEOF):
		// crypto/tls: the transport ended before close_notify.
		return EndTruncated
	case errors.Is(err, net.ErrClosed), isTimeout(err):
		return ""
	case isReset(err):
		return EndReset
	}
	return EndError
}

type lingerSetter interface{ SetLinger(sec int) error }

var _ lingerSetter = (*net.TCPConn)(nil)

// Abort closes c so that its peer sees an abort, never a clean end: a TCP
// socket is reset (SO_LINGER 0 sends a RST and drops what is still queued
// to send), and a *tls.Conn is closed beneath its record layer, so that no
// close_notify is sent. A unix socket, which cannot be reset, is closed.
func Abort(c net.Conn) error {
	c = beneath(c, func(c net.Conn) bool { _, ok := c.(lingerSetter); return ok })
	if ls, ok := c.(lingerSetter); ok {
		ls.SetLinger(0)
	}
	return c.Close()
}

// netConner is a wrapper that tells the conn beneath it: a *tls.Conn, a
// Transport, a tlsterm.RecordConn.
type netConner interface{ NetConn() net.Conn }

// beneath unwraps c until is(c) holds or nothing is beneath it.
func beneath(c net.Conn, is func(net.Conn) bool) net.Conn {
	for !is(c) {
		u, ok := c.(netConner)
		if !ok {
			break
		}
		c = u.NetConn()
	}
	return c
}
