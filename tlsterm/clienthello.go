package tlsterm

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Peeking a ClientHello for passthrough routes: the record framing is
// checked here, cheaply and before anything is parsed; the hello itself is
// parsed by crypto/tls, run as a server over the peeked bytes until it hands
// over its ClientHelloInfo (the technique of inetaf/tcpproxy's sni.go).

const (
	recordHeaderLen     = 5     // type, version (2), length (2)
	recordTypeHandshake = 0x16  // content type of a handshake record
	maxRecordPayload    = 16384 // 2^14, the most a plaintext record may carry (RFC 8446 5.1)
	handshakeHeaderLen  = 4     // type, length (3)
	typeClientHello     = 1     // handshake type of a ClientHello
)

// MaxHelloBytes is the most PeekClientHello peeks: one full TLS record of
// 16 KiB and its 5-byte header. A ClientHello that needs more, counting the
// header of every record it spans, is ErrHelloTooLarge. Real hellos are far
// smaller: a Go client's, with its post-quantum X25519MLKEM768 key share, is
// about 1.5 KiB.
//
// The *bufio.Reader given to PeekClientHello must hold at least this many
// bytes: make it with bufio.NewReaderSize(conn, MaxHelloBytes) or larger.
const MaxHelloBytes = recordHeaderLen + maxRecordPayload

var (
	// ErrNotTLS is returned by PeekClientHello when the stream does not start
	// with a TLS handshake record: plain HTTP, an SSLv2-style hello, or
	// anything else.
	ErrNotTLS = errors.New("tlsterm: not a TLS handshake")
	// ErrHelloTooLarge is returned by PeekClientHello for a record longer
	// than TLS allows or a ClientHello that does not fit in MaxHelloBytes.
	ErrHelloTooLarge = errors.New("tlsterm: ClientHello too large")
)

// errHelloCaptured stops crypto/tls once it has parsed the ClientHello.
var errHelloCaptured = errors.New("tlsterm: ClientHello captured")

// Hello is what a client offered in its ClientHello, as crypto/tls parsed
// it.
type Hello struct {
	// ServerName is the SNI host name, lower-cased as crypto/tls does when it
	// picks a certificate; "" if the client sent none (it does not for an IP
	// address).
	ServerName string
	// ALPN lists the application protocols offered, in the client's order;
	// nil if none.
	ALPN []string
	// SupportedVersions lists the TLS versions offered (tls.VersionTLS13 and
	// so on), in the client's order, GREASE values included. For a client
	// that sends no supported_versions extension, crypto/tls derives them
	// from the hello's legacy version.
	SupportedVersions []uint16
	// Length is how many bytes the hello takes at the front of the reader:
	// every record it spans, headers included.
	Length int
}

// PeekClientHello reads the TLS ClientHello at the front of br without
// consuming it: every byte stays in br, to be forwarded unchanged to a
// passthrough backend. br must hold at least MaxHelloBytes
// (bufio.NewReaderSize(conn, MaxHelloBytes)).
//
// It blocks only in br.Peek, so the caller bounds it with a read deadline
// on the underlying conn; a read error such as that deadline comes back
// wrapped, for errors.Is and errors.As. A stream that ends before the first
// byte is a wrapped io.EOF; one that ends inside the hello, a wrapped
// io.ErrUnexpectedEOF. A stream that is not TLS is ErrNotTLS, an oversize
// one ErrHelloTooLarge, and a hello that does not parse an error starting
// "tlsterm: parse ClientHello:".
func PeekClientHello(br *bufio.Reader) (Hello, error) {
	if br.Size() < MaxHelloBytes {
		return Hello{}, fmt.Errorf("tlsterm: peek ClientHello: the bufio.Reader holds %d bytes, less than MaxHelloBytes (%d)", br.Size(), MaxHelloBytes)
	}
	raw, err := frameHello(br)
	if err != nil {
		return Hello{}, err
	}
	return parseHello(raw)
}

// frameHello peeks, record by record, until the records at the front of br
// hold the whole ClientHello message, and returns those records. It checks
// the framing only.
func frameHello(br *bufio.Reader) ([]byte, error) {
	first, err := peek(br, 1)
	if err != nil {
		return nil, err
	}
	if first[0] != recordTypeHandshake {
		return nil, ErrNotTLS
	}
	var (
		total int                      // bytes of the records framed so far, headers included
		have  int                      // handshake bytes in them
		need  = -1                     // length of the handshake message, its header included; -1 until known
		hdr   [handshakeHeaderLen]byte // the handshake header, gathered across records
	)
	for need < 0 || have < need {
		b, err := peek(br, total+recordHeaderLen)
		if err != nil {
			return nil, err
		}
		rec := b[total:]
		if rec[0] != recordTypeHandshake || rec[1] != 3 {
			if total == 0 {
				return nil, ErrNotTLS
			}
			return nil, fmt.Errorf("tlsterm: parse ClientHello: record type 0x%02x version 0x%02x%02x inside the hello", rec[0], rec[1], rec[2])
		}
		n := int(rec[3])<<8 | int(rec[4])
		switch {
		case n == 0:
			return nil, errors.New("tlsterm: parse ClientHello: zero-length handshake record")
		case n > maxRecordPayload:
			return nil, fmt.Errorf("%w: record of %d bytes, more than %d", ErrHelloTooLarge, n, maxRecordPayload)
		case total+recordHeaderLen+n > MaxHelloBytes:
			return nil, fmt.Errorf("%w: its records take more than %d bytes", ErrHelloTooLarge, MaxHelloBytes)
		}
		b, err = peek(br, total+recordHeaderLen+n)
		if err != nil {
			return nil, err
		}
		if have < len(hdr) {
			copy(hdr[have:], b[total+recordHeaderLen:])
		}
		have += n
		total += recordHeaderLen + n
		if need < 0 && have >= len(hdr) {
			if hdr[0] != typeClientHello {
				return nil, fmt.Errorf("tlsterm: parse ClientHello: handshake message type %d, not a ClientHello", hdr[0])
			}
			need = len(hdr) + (int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3]))
			if need+recordHeaderLen > MaxHelloBytes {
				return nil, fmt.Errorf("%w: handshake message of %d bytes", ErrHelloTooLarge, need)
			}
		}
	}
	return br.Peek(total) // buffered already: cannot fail
}

// peek is br.Peek(n) with its errors named: io.EOF after some bytes becomes
// io.ErrUnexpectedEOF.
func peek(br *bufio.Reader, n int) ([]byte, error) {
	b, err := br.Peek(n)
	if err == nil {
		return b, nil
	}
	if errors.Is(err, io.EOF) && len(b) > 0 {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("tlsterm: read ClientHello: %w", err)
}

// parseHello runs a crypto/tls server over raw, the records of a
// ClientHello, and stops it once it has parsed the hello.
func parseHello(raw []byte) (Hello, error) {
	var info *tls.ClientHelloInfo
	cfg := &tls.Config{
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			info = hi
			return nil, errHelloCaptured
		},
	}
	err := tls.Server(&helloConn{r: bytes.NewReader(raw)}, cfg).Handshake()
	if info == nil {
		return Hello{}, fmt.Errorf("tlsterm: parse ClientHello: %w", err)
	}
	// crypto/tls copies what it parses out of raw, which belongs to br.
	return Hello{
		ServerName:        strings.ToLower(info.ServerName),
		ALPN:              info.SupportedProtos,
		SupportedVersions: info.SupportedVersions,
		Length:            len(raw),
	}, nil
}

// helloConn is a read-only net.Conn over the peeked hello for crypto/tls:
// reads past the end get io.EOF and writes (its alert) fail, so the
// handshake can neither block nor send anything.
type helloConn struct {
	r *bytes.Reader
}

var errReadOnly = errors.New("tlsterm: ClientHello peek is read-only")

func (c *helloConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *helloConn) Write(p []byte) (int, error)      { return 0, errReadOnly }
func (c *helloConn) Close() error                     { return nil }
func (c *helloConn) LocalAddr() net.Addr              { return nil }
func (c *helloConn) RemoteAddr() net.Addr             { return nil }
func (c *helloConn) SetDeadline(time.Time) error      { return nil }
func (c *helloConn) SetReadDeadline(time.Time) error  { return nil }
func (c *helloConn) SetWriteDeadline(time.Time) error { return nil }
