package tlsterm_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"sluice/tlsterm"
)

// Real ClientHellos come from crypto/tls clients over net.Pipe or loopback
// TCP; malformed ones are real hellos re-framed or patched.

type helloCase struct {
	name  string
	cfg   *tls.Config
	sni   string   // want Hello.ServerName
	alpn  []string // want Hello.ALPN
	tls13 bool     // want TLS 1.3 among Hello.SupportedVersions
	min   int      // want Hello.Length at least this
}

func helloCases() []helloCase {
	return []helloCase{
		{
			name:  "TLS 1.3 with SNI and ALPN",
			cfg:   &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}},
			sni:   "api.example.com",
			alpn:  []string{"h2", "http/1.1"},
			tls13: true,
		},
		{
			name: "TLS 1.2 only",
			cfg: &tls.Config{
				ServerName: "legacy.example.com",
				NextProtos: []string{"http/1.1"},
				MaxVersion: tls.VersionTLS12,
			},
			sni:  "legacy.example.com",
			alpn: []string{"http/1.1"},
		},
		{
			// A 1,216-byte key share (ML-KEM-768 and X25519): the big
			// hellos of Go 1.24+ and current browsers.
			name: "X25519MLKEM768 key share",
			cfg: &tls.Config{
				ServerName:       "pq.example.com",
				NextProtos:       []string{"h2"},
				CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519},
			},
			sni:   "pq.example.com",
			alpn:  []string{"h2"},
			tls13: true,
			min:   1200,
		},
		{
			name:  "mixed-case server name",
			cfg:   &tls.Config{ServerName: "WWW.Example.COM"},
			sni:   "www.example.com",
			tls13: true,
		},
		{
			// Clients send no SNI for an IP address.
			name:  "IP address, no SNI, no ALPN",
			cfg:   &tls.Config{ServerName: "127.0.0.1"},
			tls13: true,
		},
	}
}

func (c helloCase) check(t *testing.T, h tlsterm.Hello) {
	t.Helper()
	if h.ServerName != c.sni {
		t.Errorf("ServerName = %q, want %q", h.ServerName, c.sni)
	}
	if !slices.Equal(h.ALPN, c.alpn) {
		t.Errorf("ALPN = %q, want %q", h.ALPN, c.alpn)
	}
	if !slices.Contains(h.SupportedVersions, tls.VersionTLS12) {
		t.Errorf("SupportedVersions = %x, want TLS 1.2 among them", h.SupportedVersions)
	}
	if got := slices.Contains(h.SupportedVersions, tls.VersionTLS13); got != c.tls13 {
		t.Errorf("SupportedVersions = %x: TLS 1.3 offered = %v, want %v", h.SupportedVersions, got, c.tls13)
	}
	if h.Length < c.min {
		t.Errorf("Length = %d, want at least %d", h.Length, c.min)
	}
}

// recordConn records what is written through it.
type recordConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *recordConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.buf.Write(p[:n])
	return n, err
}

// TestPeekClientHello peeks live at what crypto/tls clients send.
func TestPeekClientHello(t *testing.T) {
	for _, tc := range helloCases() {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			rec := &recordConn{Conn: cc}
			done := make(chan struct{})
			go func() {
				defer close(done)
				defer cc.Close()
				tls.Client(rec, tc.cfg).Handshake() // fails once sc closes
			}()
			defer func() { sc.Close(); <-done }()

			sc.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReaderSize(sc, tlsterm.MaxHelloBytes)
			h, err := tlsterm.PeekClientHello(br)
			if err != nil {
				t.Fatalf("PeekClientHello: %v", err)
			}
			tc.check(t, h)
			if br.Buffered() < h.Length {
				t.Fatalf("br holds %d bytes after the peek, less than the %d of the hello", br.Buffered(), h.Length)
			}
			got := make([]byte, h.Length)
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatalf("read the peeked hello: %v", err)
			}
			sc.Close()
			<-done
			if !bytes.Equal(got, rec.buf.Bytes()) {
				t.Errorf("br yields %d bytes %x,\nthe client wrote %d: %x", len(got), got, rec.buf.Len(), rec.buf.Bytes())
			}
		})
	}
}

// helloBytes is the ClientHello a crypto/tls client with cfg sends: one
// record, read from the far end of a net.Pipe.
func helloBytes(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	cc, sc := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cc.Close()
		tls.Client(cc, cfg).Handshake()
	}()
	defer func() { sc.Close(); <-done }()
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	hello := make([]byte, 5)
	if _, err := io.ReadFull(sc, hello); err != nil {
		tb.Fatalf("read the record header: %v", err)
	}
	hello = append(hello, make([]byte, binary.BigEndian.Uint16(hello[3:]))...)
	if _, err := io.ReadFull(sc, hello[5:]); err != nil {
		tb.Fatalf("read the record: %v", err)
	}
	return hello
}

// reframe puts a handshake message into records of the given payload sizes,
// the last taking the rest.
func reframe(msg []byte, sizes ...int) []byte {
	var out []byte
	for i := 0; len(msg) > 0; i++ {
		n := len(msg)
		if i < len(sizes) && sizes[i] < n {
			n = sizes[i]
		}
		out = append(out, 0x16, 0x03, 0x01, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// extensionsAt returns the offset of the extensions' length in a
// ClientHello message (handshake header included).
func extensionsAt(msg []byte) int {
	p := 4 + 2 + 32             // handshake header, version, random
	p += 1 + int(msg[p])        // session id
	p += 2 + int(be16(msg[p:])) // cipher suites
	return p + 1 + int(msg[p])  // compression methods
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// resize sets the lengths of a single-record hello after its message grew or
// shrank by delta bytes inside the extensions.
func resize(hello []byte, delta int) {
	msg := hello[5:]
	n := len(msg) - 4
	msg[1], msg[2], msg[3] = byte(n>>16), byte(n>>8), byte(n)
	binary.BigEndian.PutUint16(hello[3:], uint16(len(msg)))
	at := extensionsAt(msg)
	binary.BigEndian.PutUint16(msg[at:], uint16(int(be16(msg[at:]))+delta))
}

// pad grows a single-record hello with a padding extension (RFC 7685) until
// its record carries payload bytes.
func pad(tb testing.TB, hello []byte, payload int) []byte {
	tb.Helper()
	extra := payload - len(hello[5:]) - 4
	if extra < 0 {
		tb.Fatalf("cannot pad a %d-byte hello to %d", len(hello[5:]), payload)
	}
	out := slices.Clone(hello)
	out = append(out, 0x00, 0x15, byte(extra>>8), byte(extra))
	out = append(out, make([]byte, extra)...)
	resize(out, 4+extra)
	return out
}

// patch returns a copy of b with f applied.
func patch(b []byte, f func(b []byte)) []byte {
	b = slices.Clone(b)
	f(b)
	return b
}

// TestPeekClientHelloFraming: a hello spread over records, arriving in
// pieces, followed by more data, or as large as allowed.
func TestPeekClientHelloFraming(t *testing.T) {
	hc := helloCases()[2] // the big ML-KEM hello
	hello := helloBytes(t, hc.cfg)
	msg := hello[5:]
	largest := pad(t, hello, 16384)                      // one record of MaxHelloBytes
	largest2 := pad(t, hello, tlsterm.MaxHelloBytes-2*5) // two records of MaxHelloBytes
	tests := []struct {
		name   string
		hello  []byte // the records of the hello
		after  []byte // sent after the hello
		reader func(io.Reader) io.Reader
	}{
		{name: "one record", hello: hello},
		{name: "followed by more data", hello: hello, after: []byte("\x17\x03\x03\x00\x05early")},
		{name: "two records", hello: reframe(msg, 700)},
		{name: "handshake header split across records", hello: reframe(msg, 1, 2)},
		{name: "one handshake byte per record, then the rest", hello: reframe(msg, 1, 1, 1, 1)},
		{name: "records of 512 bytes", hello: reframe(msg, 512, 512, 512, 512)},
		{name: "one byte per read", hello: hello, after: []byte("more"), reader: iotest.OneByteReader},
		{name: "half per read", hello: reframe(msg, 100), reader: iotest.HalfReader},
		{name: "EOF with the last bytes", hello: hello, reader: iotest.DataErrReader},
		{name: "largest: one full record", hello: largest},
		{name: "largest: two records", hello: reframe(largest2[5:], 8000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append(slices.Clone(tc.hello), tc.after...)
			var r io.Reader = bytes.NewReader(in)
			if tc.reader != nil {
				r = tc.reader(r)
			}
			br := bufio.NewReaderSize(r, tlsterm.MaxHelloBytes)
			h, err := tlsterm.PeekClientHello(br)
			if err != nil {
				t.Fatalf("PeekClientHello: %v", err)
			}
			hc.check(t, h)
			if h.Length != len(tc.hello) {
				t.Errorf("Length = %d, want %d", h.Length, len(tc.hello))
			}
			mustYield(t, br, in)
		})
	}
}

// mustYield checks that br still yields want, all of it.
func mustYield(t *testing.T, br *bufio.Reader, want []byte) {
	t.Helper()
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read after the peek: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("br yields %d bytes %.64x...,\nwant %d: %.64x...", len(got), got, len(want), want)
	}
}

func TestPeekClientHelloErrors(t *testing.T) {
	hello := helloBytes(t, helloCases()[0].cfg)
	msg := hello[5:]
	ext := 5 + extensionsAt(msg)                           // offset of the extensions' length in hello
	tooLarge := pad(t, hello, tlsterm.MaxHelloBytes-2*5+1) // two records of MaxHelloBytes+1
	tests := []struct {
		name string
		in   []byte
		is   error  // want errors.Is(err, is), when set
		msg  string // want the error to start with this
	}{
		{name: "empty", in: nil, is: io.EOF},
		{name: "plain HTTP", in: []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), is: tlsterm.ErrNotTLS},
		{name: "HTTP/2 preface", in: []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), is: tlsterm.ErrNotTLS},
		{name: "SSLv2-style hello", in: []byte("\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10"), is: tlsterm.ErrNotTLS},
		{name: "alert record", in: []byte("\x15\x03\x01\x00\x02\x02\x28"), is: tlsterm.ErrNotTLS},
		{name: "record version 2.0", in: patch(hello, func(b []byte) { b[1] = 2 }), is: tlsterm.ErrNotTLS},

		{name: "zero-length record", in: []byte("\x16\x03\x01\x00\x00"), msg: "tlsterm: parse ClientHello: zero-length"},
		{name: "zero-length record inside the hello", in: append(reframe(msg, 100)[:105], "\x16\x03\x01\x00\x00"...), msg: "tlsterm: parse ClientHello: zero-length"},
		{name: "wrong handshake type", in: patch(hello, func(b []byte) { b[5] = 2 }), msg: "tlsterm: parse ClientHello: handshake message type 2"},
		{name: "application data inside the hello", in: patch(reframe(msg, 100), func(b []byte) { b[105] = 0x17 }), msg: "tlsterm: parse ClientHello: record type 0x17"},
		{name: "extensions length bits flipped", in: patch(hello, func(b []byte) { b[ext] ^= 0xff }), msg: "tlsterm: parse ClientHello: "},
		{name: "extensions length one too long", in: patch(hello, func(b []byte) { b[ext+1]++ }), msg: "tlsterm: parse ClientHello: "},
		{name: "extensions length one too short", in: patch(hello, func(b []byte) { b[ext+1]-- }), msg: "tlsterm: parse ClientHello: "},
		{name: "first extension overruns", in: patch(hello, func(b []byte) { b[ext+4], b[ext+5] = 0xff, 0xff }), msg: "tlsterm: parse ClientHello: "},
		{name: "extensions cut short", in: func() []byte {
			b := slices.Clone(hello[:len(hello)-3])
			resize(b, 0) // consistent framing, the extensions say 3 bytes more
			return b
		}(), msg: "tlsterm: parse ClientHello: "},

		{name: "one byte", in: hello[:1], is: io.ErrUnexpectedEOF},
		{name: "record header only", in: hello[:5], is: io.ErrUnexpectedEOF},
		{name: "half the hello", in: hello[:len(hello)/2], is: io.ErrUnexpectedEOF},
		{name: "second record missing", in: reframe(msg, 100)[:105], is: io.ErrUnexpectedEOF},

		{name: "record of 16385 bytes", in: []byte("\x16\x03\x01\x40\x01"), is: tlsterm.ErrHelloTooLarge},
		{name: "record of 65535 bytes", in: []byte("\x16\x03\x03\xff\xff"), is: tlsterm.ErrHelloTooLarge},
		{name: "handshake message beyond the max", in: []byte("\x16\x03\x01\x00\x04\x01\x00\x40\x00"), is: tlsterm.ErrHelloTooLarge},
		{name: "handshake message of 16 MiB", in: []byte("\x16\x03\x01\x00\x04\x01\xff\xff\xff"), is: tlsterm.ErrHelloTooLarge},
		{name: "records beyond MaxHelloBytes", in: reframe(tooLarge[5:], 8000), is: tlsterm.ErrHelloTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(bytes.NewReader(tc.in), tlsterm.MaxHelloBytes)
			h, err := tlsterm.PeekClientHello(br)
			if err == nil {
				t.Fatalf("PeekClientHello = %+v, want an error", h)
			}
			t.Logf("error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %q", err, tc.is)
			}
			if !strings.HasPrefix(err.Error(), tc.msg) {
				t.Errorf("error %q, want it to start with %q", err, tc.msg)
			}
			if tc.is == io.EOF && errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %q is io.ErrUnexpectedEOF, want io.EOF only", err)
			}
			if h.Length != 0 || h.ServerName != "" {
				t.Errorf("Hello = %+v with an error, want the zero Hello", h)
			}
			mustYield(t, br, tc.in)
		})
	}
}

func TestPeekClientHelloSmallReader(t *testing.T) {
	hello := helloBytes(t, helloCases()[0].cfg)
	br := bufio.NewReaderSize(bytes.NewReader(hello), tlsterm.MaxHelloBytes-1)
	_, err := tlsterm.PeekClientHello(br)
	if err == nil || !strings.Contains(err.Error(), "MaxHelloBytes") {
		t.Errorf("PeekClientHello on a %d-byte reader: error %v, want one naming MaxHelloBytes", br.Size(), err)
	}
	mustYield(t, br, hello)
}

// tcpPair returns the two ends of a loopback TCP connection, the client
// end with TCP_NODELAY.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	client, server = c.(*net.TCPConn), s.(*net.TCPConn)
	if err := client.SetNoDelay(true); err != nil {
		t.Fatal(err)
	}
	return client, server
}

// TestPeekClientHelloSegments sends a big hello over loopback TCP in writes
// of 1 to 7 bytes, so it arrives in many small segments.
func TestPeekClientHelloSegments(t *testing.T) {
	hc := helloCases()[2]
	hello := helloBytes(t, hc.cfg)
	client, server := tcpPair(t)

	var wg sync.WaitGroup
	wg.Add(1)
	var werr error
	go func() {
		defer wg.Done()
		for p, n := hello, 1; len(p) > 0; n = n%7 + 1 {
			n := min(n, len(p))
			if _, werr = client.Write(p[:n]); werr != nil {
				return
			}
			p = p[n:]
		}
		werr = client.CloseWrite()
	}()
	defer wg.Wait()

	server.SetReadDeadline(time.Now().Add(5 * time.Second)) // the guard
	br := bufio.NewReaderSize(server, tlsterm.MaxHelloBytes)
	h, err := tlsterm.PeekClientHello(br)
	if err != nil {
		t.Fatalf("PeekClientHello: %v", err)
	}
	hc.check(t, h)
	mustYield(t, br, hello)
	wg.Wait()
	if werr != nil {
		t.Fatalf("write: %v", werr)
	}
}

// TestPeekClientHelloConnEnds: a conn that closes, or whose read deadline
// passes, halfway through the hello.
func TestPeekClientHelloConnEnds(t *testing.T) {
	hello := helloBytes(t, helloCases()[0].cfg)
	half := hello[:len(hello)/2]
	tests := []struct {
		name     string
		close    bool          // the client closes after half the hello
		deadline time.Duration // the server's read deadline
		is       error
	}{
		{name: "peer closes", close: true, deadline: 5 * time.Second, is: io.ErrUnexpectedEOF},
		{name: "read deadline", deadline: 50 * time.Millisecond, is: os.ErrDeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			if _, err := client.Write(half); err != nil {
				t.Fatal(err)
			}
			if tc.close {
				client.Close()
			}
			server.SetReadDeadline(time.Now().Add(tc.deadline))
			br := bufio.NewReaderSize(server, tlsterm.MaxHelloBytes)
			_, err := tlsterm.PeekClientHello(br)
			if !errors.Is(err, tc.is) {
				t.Fatalf("PeekClientHello: error %v, want %v", err, tc.is)
			}
			var ne net.Error
			if timeout := errors.As(err, &ne) && ne.Timeout(); timeout != (tc.is == os.ErrDeadlineExceeded) {
				t.Errorf("error %v: net.Error timeout = %v", err, timeout)
			}
			// Whatever arrived is still there for the backend.
			server.SetReadDeadline(time.Now().Add(5 * time.Second))
			client.Close()
			mustYield(t, br, half)
		})
	}
}

func FuzzPeekClientHello(f *testing.F) {
	for _, hc := range helloCases() {
		hello := helloBytes(f, hc.cfg)
		f.Add(hello)
		f.Add(reframe(hello[5:], 1, 2, 300))
		f.Add(hello[:len(hello)/2])
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("\x16\x03\x01\x00\x04\x01\x00\x40\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), tlsterm.MaxHelloBytes)
		h, err := tlsterm.PeekClientHello(br)
		if err == nil && (h.Length < 9 || h.Length > len(data) || h.Length > tlsterm.MaxHelloBytes) {
			t.Errorf("Length = %d for %d bytes of input", h.Length, len(data))
		}
		got, rerr := io.ReadAll(br)
		if rerr != nil || !bytes.Equal(got, data) {
			t.Fatalf("after PeekClientHello (err %v): br yields %x (err %v), want %x", err, got, rerr, data)
		}
	})
}
