package tlsterm

import (
	"encoding/binary"
	"net"
	"sync"
)

// TLS record content types beside recordTypeHandshake (clienthello.go).
const (
	recordTypeChangeCipherSpec = 20
	recordTypeAlert            = 21
	recordTypeApplicationData  = 23
)

// RecordConn is the net.Conn under a server *tls.Conn whose connection may
// be handed to kernel TLS. Until Prepare it does two things:
//
//   - Each Read returns at most the rest of the current TLS record, so
//     crypto/tls, which otherwise reads as much as the socket has, cannot
//     swallow records the client sent straight after its Finished: when
//     the handshake returns, the socket is at the first record after it.
//   - It keeps a copy of every record in both directions, from which
//     Prepare counts the records crypto/tls already protected with the
//     traffic keys (session tickets, the TLS 1.2 Finished).
//
// Prepare ends both, whatever it returns. A connection that stays in
// userspace then reads through RecordConn at full speed.
//
// RecordConn has no CloseWrite: half-close the raw *net.TCPConn, which
// the caller keeps.
type RecordConn struct {
	net.Conn
	log keyLog // filled by the config of WithKeyLog

	mu          sync.Mutex
	in, out     recordStream // client→server and server→client
	passthrough bool
}

// NewRecordConn wraps the raw connection of a server handshake.
func NewRecordConn(c net.Conn) *RecordConn {
	return &RecordConn{Conn: c}
}

// Read reads at most to the end of the current record.
func (c *RecordConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.passthrough {
		c.mu.Unlock()
		return c.Conn.Read(p)
	}
	if want := c.in.want(); len(p) > want {
		p = p[:want]
	}
	c.mu.Unlock()
	// The lock is not held across the read: crypto/tls reads and writes
	// from different goroutines once the handshake is over.
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if !c.passthrough {
		c.in.feed(p[:n])
	}
	c.mu.Unlock()
	return n, err
}

// Write writes p and keeps a copy of the records in it.
func (c *RecordConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	if !c.passthrough {
		c.out.feed(p[:n])
	}
	c.mu.Unlock()
	return n, err
}

// NetConn returns the connection beneath.
func (c *RecordConn) NetConn() net.Conn { return c.Conn }

// release stops bounding reads and drops the copies.
func (c *RecordConn) release() {
	c.mu.Lock()
	c.passthrough = true
	c.in, c.out = recordStream{}, recordStream{}
	c.mu.Unlock()
	c.log.mu.Lock()
	c.log.lines = nil
	c.log.mu.Unlock()
}

// record is one whole TLS record as it crossed the wire.
type record struct {
	header [recordHeaderLen]byte
	body   []byte
}

func (r *record) typ() byte { return r.header[0] }

// recordStream cuts one direction's bytes into records.
type recordStream struct {
	header  [recordHeaderLen]byte
	nheader int    // header bytes seen of the current record
	body    []byte // body bytes seen of the current record
	left    int    // body bytes still to come
	records []record
}

// want is how many bytes a read may take without passing the end of the
// current record: the rest of its header, or of its body.
func (s *recordStream) want() int {
	if s.nheader < recordHeaderLen {
		return recordHeaderLen - s.nheader
	}
	return s.left
}

// partial reports that the stream stops inside a record.
func (s *recordStream) partial() bool { return s.nheader > 0 }

func (s *recordStream) feed(p []byte) {
	for len(p) > 0 {
		if s.nheader < recordHeaderLen {
			n := copy(s.header[s.nheader:], p)
			s.nheader += n
			p = p[n:]
			if s.nheader < recordHeaderLen {
				return
			}
			s.left = int(binary.BigEndian.Uint16(s.header[3:]))
			s.body = make([]byte, 0, s.left)
		}
		n := min(s.left, len(p))
		s.body = append(s.body, p[:n]...)
		s.left -= n
		p = p[n:]
		if s.left == 0 {
			s.records = append(s.records, record{header: s.header, body: s.body})
			s.nheader, s.body = 0, nil
		}
	}
}
