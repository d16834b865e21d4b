package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// kind is the sort of route a stream goes through.
type kind uint8

const (
	kindTerminate   kind = iota // TLS terminated by sluice, plain backend
	kindPlain                   // plain TCP both sides
	kindPassthrough             // TLS relayed untouched, the backend terminates
	kindWebSocket               // TLS terminated, a `websocket = true` route
	kindWSDefault               // the WebSocket listener's default route
	numKinds
)

func (k kind) String() string {
	return [...]string{"terminate", "plain", "passthrough", "websocket", "ws-default"}[k]
}

// upstream is the sluice upstream (two backend processes) behind the kind.
func (k kind) upstream() string {
	return [...]string{"term", "plain", "pass", "ws", "ws"}[k]
}

// listener is the name of the sluice listener the kind goes through, as
// its log lines say listener=.
func (k kind) listener() string {
	return [...]string{"terminate", "plain", "passthrough", "websocket", "websocket"}[k]
}

// target is how a client reaches a kind's route.
type target struct {
	addr string
	tls  *tls.Config // nil: plain TCP
	ws   bool        // send a WebSocket upgrade first
}

// clientResult is the client's account of one stream.
type clientResult struct {
	ID       uint64
	Kind     kind
	Mode     mode
	Up, Down int64
	Start    time.Time
	End      time.Time
	Local    string // the client's address, as sluice logs it; "" if it never connected
	Instance int    // the backend's pid from its ack; 0 if never learnt
	Status   string // statusOK, statusFail, statusTruncated, statusCorrupted
	Cause    string // phase:cause, empty when ok
	DownGot  int64
	UpSent   int64
	Corrupt  int64
}

// runClient runs one stream through sluice and verifies what comes back.
// Everything it does is bounded by timeout.
func runClient(ctx context.Context, t target, k kind, h header, timeout time.Duration) clientResult {
	res := clientResult{ID: h.ID, Kind: k, Mode: h.Mode, Up: h.Up, Down: h.Down, Start: time.Now()}
	ctx, cancel := context.WithDeadline(ctx, res.Start.Add(timeout))
	defer cancel()
	c := clientConn{res: &res}
	c.run(ctx, t, h)
	res.End = time.Now()
	return res
}

// clientConn is one stream's client side while it runs.
type clientConn struct {
	res  *clientResult
	raw  *net.TCPConn
	conn net.Conn
	br   *bufio.Reader
}

func (c *clientConn) run(ctx context.Context, t target, h header) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		c.fail("dial", err)
		return
	}
	c.raw = nc.(*net.TCPConn)
	c.conn = c.raw
	c.res.Local = c.raw.LocalAddr().String()
	deadline, _ := ctx.Deadline()
	c.raw.SetDeadline(deadline)
	if t.tls != nil {
		tc := tls.Client(c.raw, t.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.fail("handshake", err)
			return
		}
		c.conn = tc
	}
	c.br = bufio.NewReaderSize(c.conn, 4096)
	if t.ws {
		if err := c.upgrade(); err != nil {
			c.fail("upgrade", err)
			return
		}
	}
	if _, err := c.conn.Write(h.marshal()); err != nil {
		c.fail("header", err)
		return
	}
	ack := make([]byte, ackLen)
	if err := readFull(c.br, ack); err != nil {
		c.fail("ack", err)
		return
	}
	pid, err := parseAck(ack)
	if err != nil {
		c.fail("ack", err)
		return
	}
	c.res.Instance = pid
	e := endpoint{conn: c.conn, r: c.br, raw: c.raw}
	o := exchange(e, h.Seed, leg{dirUp, h.Up}, leg{dirDown, h.Down}, orderFor(h.Mode, true))
	c.res.Status, c.res.Cause = o.status("up", "down")
	c.res.UpSent, c.res.DownGot, c.res.Corrupt = o.sent, o.rcv.Got, o.rcv.Corrupt
	if o.ok() {
		finish(c.raw)
	}
}

func (c *clientConn) upgrade() error {
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	if _, err := io.WriteString(c.conn, wsRequest("localhost", key)); err != nil {
		return fmt.Errorf("write upgrade request: %w", err)
	}
	return wsReadResponse(c.br, key)
}

// fail records a failure before the payloads. A clean EOF there is a
// stream that ended cleanly but short: a truncation, never a mere failure.
func (c *clientConn) fail(phase string, err error) {
	// Nothing was half-closed yet: an end of stream on a socket in CLOSE
	// is a reset whose error a write took (see endpoint.settle).
	if errors.Is(err, io.EOF) && c.raw != nil && inStateClose(c.raw) {
		err = errResetAsEOF
	}
	c.res.Status, c.res.Cause = statusFail, phase+":"+errCause(err)
	if errors.Is(err, io.EOF) {
		c.res.Status, c.res.Cause = statusTruncated, phase+":clean_eof_short"
	}
	if c.raw != nil {
		abort(c.raw)
	}
}

// readFull is io.ReadFull that keeps a clean EOF after some bytes a clean
// EOF (io.ReadFull calls it io.ErrUnexpectedEOF).
func readFull(r io.Reader, b []byte) error {
	for n := 0; n < len(b); {
		k, err := r.Read(b[n:])
		n += k
		if err != nil && n < len(b) {
			return err
		}
	}
	return nil
}
