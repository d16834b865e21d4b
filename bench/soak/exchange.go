package main

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
)

// order is when one end sends relative to what it receives.
type order uint8

const (
	concurrent order = iota // send and receive at once
	sendFirst               // send all and CloseWrite, then receive to EOF
	recvFirst               // receive to EOF, then send all and CloseWrite
)

// orderFor is the order the mode gives the client or the backend.
func orderFor(m mode, client bool) order {
	switch {
	case m == modeBoth:
		return concurrent
	case (m == modeClientFirst) == client:
		return sendFirst
	}
	return recvFirst
}

// endpoint is one end of a stream once the preamble is done.
type endpoint struct {
	conn net.Conn     // writes go here: the *tls.Conn or the raw socket
	r    io.Reader    // reads come from here (a bufio.Reader over conn)
	raw  *net.TCPConn // the socket itself, for half-close and abort
	fin  *atomic.Bool // set before this end sends its FIN (see settle)
}

// settle reclassifies a receive that found a clean end short. A socket
// reports a RST's error once, to whichever call comes first: when this
// end's sending direction took it, the read finds an end of stream as
// for a FIN. The socket's state tells them apart as sluice itself does: a
// FIN leaves it in CLOSE_WAIT, a RST in CLOSE, which is also where a
// clean end leads once this end has sent its own FIN, so the state is
// asked first and the flag after it.
func (e endpoint) settle(r received) received {
	if r.Err == nil && r.Got < r.Want && e.raw != nil && inStateClose(e.raw) && !e.fin.Load() {
		r.Err = errResetAsEOF
	}
	return r
}

// leg is one direction as seen from this end.
type leg struct {
	dir byte
	n   int64
}

// outcome is what an exchange did.
type outcome struct {
	sent    int64
	sendErr error
	rcv     received
	recvRan bool
}

// ok says both directions completed and verified.
func (o outcome) ok() bool {
	s, _ := o.status("", "")
	return s == statusOK
}

// status condenses an outcome: a corrupt or short clean stream is the
// worst finding, then any error, in the phase it happened.
func (o outcome) status(sendPhase, recvPhase string) (status, cause string) {
	if o.recvRan {
		rs, rc := judgeReceived(recvPhase, o.rcv)
		// A send that failed on net.ErrClosed met this end's own abort
		// after the receive failed: the receive's cause is the news.
		if rs == statusCorrupted || rs == statusTruncated || o.sendErr == nil ||
			(rs == statusFail && errors.Is(o.sendErr, net.ErrClosed)) {
			return rs, rc
		}
	}
	if o.sendErr != nil {
		return statusFail, sendPhase + ":" + errCause(o.sendErr)
	}
	return statusFail, recvPhase + ":not_run"
}

// exchange moves both payloads of a stream in the given order. Any failure
// aborts the socket (see abort), so the other direction unblocks and the
// peer sees a failure, not a clean end.
func exchange(e endpoint, seed uint64, out, in leg, ord order) outcome {
	if e.fin == nil {
		e.fin = new(atomic.Bool)
	}
	var o outcome
	switch ord {
	case sendFirst:
		o.sent, o.sendErr = sendHalf(e, seed, out)
		if o.sendErr != nil {
			abort(e.raw)
			return o
		}
		o.rcv, o.recvRan = e.settle(receivePayload(e.r, seed, in.dir, in.n)), true
	case recvFirst:
		o.rcv, o.recvRan = e.settle(receivePayload(e.r, seed, in.dir, in.n)), true
		if !o.rcvOK() {
			abort(e.raw)
			return o
		}
		o.sent, o.sendErr = sendHalf(e, seed, out)
	default:
		done := make(chan sendResult, 1)
		go sendAsync(e, seed, out, done)
		o.rcv, o.recvRan = e.settle(receivePayload(e.r, seed, in.dir, in.n)), true
		if !o.rcvOK() {
			abort(e.raw)
		}
		r := <-done
		o.sent, o.sendErr = r.n, r.err
	}
	if !o.ok() {
		abort(e.raw)
	}
	return o
}

type sendResult struct {
	n   int64
	err error
}

// sendAsync is the sending direction of a concurrent exchange; a failed
// send aborts the socket so that the receiving direction ends too.
func sendAsync(e endpoint, seed uint64, out leg, done chan<- sendResult) {
	n, err := sendHalf(e, seed, out)
	if err != nil {
		abort(e.raw)
	}
	done <- sendResult{n, err}
}

func (o outcome) rcvOK() bool {
	s, _ := judgeReceived("", o.rcv)
	return s == statusOK
}

// sendHalf writes this end's payload and ends its half of the stream.
func sendHalf(e endpoint, seed uint64, out leg) (int64, error) {
	n, err := sendPayload(e.conn, seed, out.dir, out.n)
	if err != nil {
		return n, err
	}
	e.fin.Store(true)
	return n, closeWrite(e.conn, e.raw)
}

// closeWrite ends this end's half: on TLS close_notify, then a FIN (a bare
// close_notify would leave the TCP half open), on TCP a FIN.
func closeWrite(c net.Conn, raw *net.TCPConn) error {
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
	}
	return raw.CloseWrite()
}

// abort closes the socket with a RST (SO_LINGER 0), which the peer reads
// as a failure; a FIN would read as a clean end.
func abort(raw *net.TCPConn) {
	raw.SetLinger(0)
	raw.Close()
}

// finish closes a stream that went well: an orderly close that lets the
// kernel deliver whatever is still queued.
func finish(raw *net.TCPConn) {
	raw.SetLinger(-1)
	raw.Close()
}
