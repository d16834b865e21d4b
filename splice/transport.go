package splice

import (
	"io"
	"net"
	"syscall"
)

// Transport is the socket beneath a *tls.Conn whose plaintext a relay will
// move: pass NewTransport(sock, prefix) to tls.Server instead of sock.
//
// It lets the relay read TLS records without waiting. During a relay its
// reads do not block: when the socket has nothing queued they fail with a
// temporary timeout error, which crypto/tls returns without making it
// sticky, keeping any partial record it holds. The relay then knows that
// crypto/tls holds no complete record, returns its buffer and waits for the
// socket itself, so an idle TLS connection holds no buffer and can be
// parked.
//
// It also replays prefix, bytes read from the socket ahead of the TLS
// stream (after a PROXY header, or by a ClientHello peek), before reading
// the socket. Outside a relay it behaves as the socket: reads block and
// honour deadlines. It keeps CloseWrite, so half-close reaches the socket.
type Transport struct {
	net.Conn
	sock     syscall.RawConn // nil: not a socket; reads always block
	prefix   []byte
	nonblock bool      // set by the relay direction that reads this transport
	drained  shortRead // the last read took all the socket had
	// eof: a read of the socket found the end of stream. crypto/tls reads
	// io.EOF both after close_notify and after a bare FIN at a record
	// boundary; only the second reads the socket's end.
	eof bool

	// Set by the reading direction while it reads from inside the
	// socket's RawConn.Read (see inPlace): reads take the descriptor fd
	// directly (a RawConn.Read of their own would wait for the fd's read
	// lock, which that call holds), with the direction's reader in.
	in *inqReader
	fd int
	w  sockWriter

	pacer Pacer // see SetPacer
}

// A Pacer shares the CPU among the connections that hold a turn with it:
// Release is called before a read or write of a Transport waits for the
// socket, and Acquire when the wait ends, before the read or write goes on.
// A wait that ends in an error (a deadline, a close) returns it without
// Acquire: a handshake that failed does not queue for a turn to report it,
// and its further reads and writes, an alert, go on without one.
type Pacer interface {
	Release()
	Acquire()
}

// SetPacer makes the Transport's blocking reads and writes (crypto/tls's
// handshake) give p back its turn while they wait for the socket; nil
// stops that. It reports false, and sets nothing, if the Transport is not
// over a socket: its waits would hold the turn. A relay's own reads never
// wait in the Transport.
func (t *Transport) SetPacer(p Pacer) bool {
	if t.sock == nil {
		return false
	}
	t.pacer = p
	return true
}

// NewTransport wraps conn, normally a *net.TCPConn or a *net.UnixConn. For
// any other net.Conn it only replays prefix; relays then read it with
// blocking reads.
func NewTransport(conn net.Conn, prefix []byte) *Transport {
	t := &Transport{Conn: conn, prefix: prefix}
	t.sock = rawSocket(conn)
	return t
}

// Read replays the prefix, then reads the socket.
func (t *Transport) Read(p []byte) (int, error) {
	if len(t.prefix) > 0 {
		n := copy(p, t.prefix)
		t.prefix = t.prefix[n:]
		if len(t.prefix) == 0 {
			t.prefix = nil
		}
		return n, nil
	}
	var n int
	var err error
	if t.in != nil {
		n, err = t.in.read(t.fd, p)
	} else if t.nonblock {
		n, err = t.drained.read(t.sock, p)
	} else if t.sock != nil {
		// As the socket's Read, with raw system calls (see rawIO):
		// crypto/tls's handshake reads.
		if t.pacer != nil {
			n, err = t.drained.sock.readPaced(t.sock, p, t.pacer)
		} else {
			n, err = t.drained.sock.readWait(t.sock, p)
		}
		if err != nil && err != io.EOF {
			err = t.opError("read", err)
		}
	} else {
		n, err = t.Conn.Read(p)
	}
	if err == io.EOF {
		t.eof = true
	}
	return n, err
}

// Write writes p to the socket as its own Write does, with raw system calls
// (see rawIO): crypto/tls's records, the relay's to the client above
// all.
func (t *Transport) Write(p []byte) (int, error) {
	if t.sock == nil {
		return t.Conn.Write(p)
	}
	var n int
	var err error
	if t.pacer != nil {
		n, err = t.w.writePaced(t.sock, p, t.pacer)
	} else {
		n, err = t.w.write(t.sock, p, true)
	}
	if err != nil {
		err = t.opError("write", err)
	}
	return n, err
}

// opError wraps err as the socket's own Read or Write would.
func (t *Transport) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: t.LocalAddr().Network(), Source: t.LocalAddr(), Addr: t.RemoteAddr(), Err: err}
}

// Buffered is how many prefix bytes are left to replay.
func (t *Transport) Buffered() int { return len(t.prefix) }

// CloseWrite half-closes the socket (sends a FIN), or closes conn if it
// cannot half-close.
func (t *Transport) CloseWrite() error {
	if cw, ok := t.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return t.Conn.Close()
}

// NetConn returns the wrapped connection.
func (t *Transport) NetConn() net.Conn { return t.Conn }

// wouldBlock is what a non-blocking read returns when nothing is queued. It
// is a temporary timeout, so crypto/tls does not record it as the
// connection's permanent error.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "splice: read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}

// KernelRecords is a socket whose TLS record layer the kernel runs (kernel
// TLS; tlsterm.KernelConn): a relay splices its plaintext as it does a
// plain socket's bytes, and leaves to it what only it understands.
type KernelRecords interface {
	net.Conn
	syscall.Conn
	// Control is told the error that stopped a read or splice from the
	// socket, which may mean that a record other than application data is
	// waiting. It returns plaintext to pass on (application data after
	// all), io.EOF at the end of the peer's stream (close_notify), nil to
	// read on, or the error that ends the stream.
	Control(err error) ([]byte, error)
	// PrepareWrite is called before each write to the socket: the record
	// layer may owe the peer a record first (a key update).
	PrepareWrite() error
	// CloseWrite ends our stream: close_notify, then a FIN.
	CloseWrite() error
}
