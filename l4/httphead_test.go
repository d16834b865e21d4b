package l4

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
)

// crlfHead joins lines with CRLF and appends the empty line ending a head.
func crlfHead(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n\r\n"
}

var chromeHead = crlfHead(
	"GET /chat?room=1 HTTP/1.1",
	"Host: example.com",
	"Connection: Upgrade",
	"Pragma: no-cache",
	"Cache-Control: no-cache",
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
	"Upgrade: websocket",
	"Origin: https://example.com",
	"Sec-WebSocket-Version: 13",
	"Accept-Encoding: gzip, deflate, br",
	"Accept-Language: en-US,en;q=0.9",
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
	"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
)

var firefoxHead = crlfHead(
	"GET /chat HTTP/1.1",
	"Host: example.com",
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
	"Accept: */*",
	"Accept-Language: en-US,en;q=0.5",
	"Accept-Encoding: gzip, deflate, br",
	"Sec-WebSocket-Version: 13",
	"Origin: https://example.com",
	"Sec-WebSocket-Extensions: permessage-deflate",
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
	"Connection: keep-alive, Upgrade",
	"Sec-Fetch-Dest: empty",
	"Sec-Fetch-Mode: websocket",
	"Sec-Fetch-Site: same-origin",
	"Pragma: no-cache",
	"Cache-Control: no-cache",
	"Upgrade: websocket",
)

// headCases are complete heads (or garbage) and whether each is a handshake.
var headCases = []struct {
	name string
	head string
	want bool
}{
	{"chrome", chromeHead, true},
	{"firefox", firefoxHead, true},
	{"minimal", crlfHead("GET / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"), true},
	{"bare LF", "GET / HTTP/1.1\nUpgrade: websocket\nConnection: Upgrade\n\n", true},
	{"mixed line endings", "GET / HTTP/1.1\r\nUpgrade: websocket\nConnection: Upgrade\r\n\n", true},
	{"lowercase", crlfHead("GET / HTTP/1.1", "upgrade: websocket", "connection: upgrade"), true},
	{"uppercase", crlfHead("GET / HTTP/1.1", "UPGRADE: WEBSOCKET", "CONNECTION: UPGRADE"), true},
	{"HTTP/1.9", crlfHead("GET / HTTP/1.9", "Upgrade: websocket", "Connection: Upgrade"), true},
	{"no OWS", crlfHead("GET / HTTP/1.1", "Upgrade:websocket", "Connection:Upgrade"), true},
	{"OWS tabs", crlfHead("GET / HTTP/1.1", "Upgrade:\t websocket \t", "Connection: \tUpgrade\t"), true},
	{"multiple Connection", crlfHead("GET / HTTP/1.1", "Connection: keep-alive", "Upgrade: websocket", "Connection: Upgrade"), true},
	{"multiple Upgrade", crlfHead("GET / HTTP/1.1", "Upgrade: h2c", "Upgrade: websocket", "Connection: Upgrade"), true},
	{"tokens among commas", crlfHead("GET / HTTP/1.1", "Upgrade: , ,websocket,", "Connection: ,,keep-alive , upgrade ,"), true},
	{"upgrade list", crlfHead("GET / HTTP/1.1", "Upgrade: h2c, WebSocket", "Connection: HTTP2-Settings, Upgrade"), true},
	{"body after head", crlfHead("GET / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade") + "\x81\x85body", true},
	{"absolute target", crlfHead("GET ws://example.com/ HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"), true},

	{"websockets", crlfHead("GET / HTTP/1.1", "Upgrade: websockets", "Connection: Upgrade"), false},
	{"websocket version", crlfHead("GET / HTTP/1.1", "Upgrade: websocket/13", "Connection: Upgrade"), false},
	{"upgraded", crlfHead("GET / HTTP/1.1", "Upgrade: websocket", "Connection: upgraded"), false},
	{"kelvin sign", crlfHead("GET / HTTP/1.1", "Upgrade: websoc\u212aet", "Connection: Upgrade"), false},
	{"token split by space", crlfHead("GET / HTTP/1.1", "Upgrade: web socket", "Connection: Upgrade"), false},
	{"POST", crlfHead("POST / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"), false},
	{"lowercase method", crlfHead("get / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"), false},
	{"HTTP/1.0", crlfHead("GET / HTTP/1.0", "Upgrade: websocket", "Connection: Upgrade"), false},
	{"HTTP/2.0", crlfHead("GET / HTTP/2.0", "Upgrade: websocket", "Connection: Upgrade"), false},
	{"HTTP/1.10", crlfHead("GET / HTTP/1.10", "Upgrade: websocket", "Connection: Upgrade"), false},
	{"lowercase version", crlfHead("GET / http/1.1", "Upgrade: websocket", "Connection: Upgrade"), false},
	{"HTTP/0.9", "GET /\r\n\r\n", false},
	{"control in target", crlfHead("GET /\x01 HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"), false},
	{"empty target", crlfHead("GET  HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"), false},
	{"extra space", crlfHead("GET / HTTP/1.1 ", "Upgrade: websocket", "Connection: Upgrade"), false},
	{"missing Connection", crlfHead("GET / HTTP/1.1", "Upgrade: websocket"), false},
	{"missing Upgrade", crlfHead("GET / HTTP/1.1", "Connection: Upgrade"), false},
	{"no headers", crlfHead("GET / HTTP/1.1"), false},
	{"tokens swapped", crlfHead("GET / HTTP/1.1", "Upgrade: upgrade", "Connection: websocket"), false},
	{"folded line", crlfHead("GET / HTTP/1.1", "Upgrade: h2c,", " websocket", "Connection: Upgrade"), false},
	{"folded tab", crlfHead("GET / HTTP/1.1", "Upgrade: websocket", "Connection: keep-alive,", "\tUpgrade"), false},
	{"space before colon", crlfHead("GET / HTTP/1.1", "Upgrade : websocket", "Connection: Upgrade"), false},
	{"no colon", crlfHead("GET / HTTP/1.1", "Upgrade websocket", "Connection: Upgrade"), false},
	{"empty name", crlfHead("GET / HTTP/1.1", ": x", "Upgrade: websocket", "Connection: Upgrade"), false},
	{"bare CR in value", crlfHead("GET / HTTP/1.1", "Upgrade: websocket\rX: y", "Connection: Upgrade"), false},
	{"leading empty line", "\r\n" + crlfHead("GET / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"), false},
	{"truncated", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", false},
	{"empty", "", false},
	{"TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", false},
	{"garbage", "\x00\xff\r\n\r\n", false},
	{"SSH", "SSH-2.0-OpenSSH_9.6\r\n", false},
}

func TestIsWebSocketUpgrade(t *testing.T) {
	for _, tc := range headCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := isWebSocketUpgrade([]byte(tc.head)); got != tc.want {
				t.Errorf("isWebSocketUpgrade(%q) = %v, want %v", tc.head, got, tc.want)
			}
		})
	}
}

func TestIsWebSocketUpgradeAllocs(t *testing.T) {
	head := []byte(firefoxHead)
	if n := testing.AllocsPerRun(100, func() { isWebSocketUpgrade(head) }); n != 0 {
		t.Errorf("isWebSocketUpgrade allocates %v times, want 0", n)
	}
}

// checkHead runs readRequestHead over r with a bound of size and checks the
// invariants that hold for every input: n within bounds, buf[:n] a prefix of in.
func checkHead(t *testing.T, r io.Reader, in string, size int) (int, bool, error) {
	t.Helper()
	buf := make([]byte, size)
	n, ws, err := readRequestHead(r, buf)
	if n < 0 || n > len(buf) || n > len(in) {
		t.Fatalf("n = %d, len(buf) = %d, len(in) = %d", n, len(buf), len(in))
	}
	if string(buf[:n]) != in[:n] {
		t.Fatalf("buf[:n] = %q, want prefix %q", buf[:n], in[:n])
	}
	return n, ws, err
}

func TestReadRequestHead(t *testing.T) {
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data err", iotest.DataErrReader},
	}
	for _, tc := range headCases {
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				n, ws, err := checkHead(t, rd.wrap(strings.NewReader(tc.head)), tc.head, maxHeadBytes)
				if ws != tc.want {
					t.Errorf("websocket = %v, want %v", ws, tc.want)
				}
				if err != nil && err != io.EOF {
					t.Errorf("err = %v", err)
				}
				if ws && rd.name == "one byte" && n != bytes.Index([]byte(tc.head), []byte("\n\r\n"))+3 &&
					n != bytes.Index([]byte(tc.head), []byte("\n\n"))+2 {
					t.Errorf("n = %d: read past the end of the head", n)
				}
			})
		}
	}
}

// chunkReader returns its chunks one per Read.
type chunkReader struct{ chunks []string }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	if r.chunks[0] = r.chunks[0][n:]; r.chunks[0] == "" {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

func TestReadRequestHeadSplit(t *testing.T) {
	for _, head := range []string{chromeHead, "GET / HTTP/1.1\nUpgrade: websocket\nConnection: upgrade\n\n"} {
		body := "\x81\x80rest of stream"
		in := head + body
		for k := 1; k < len(head); k++ {
			r := &chunkReader{chunks: []string{in[:k], in[k:]}}
			n, ws, err := checkHead(t, r, in, maxHeadBytes)
			if !ws || n != len(in) || err != nil {
				t.Fatalf("split at %d: n, websocket, err = %d, %v, %v; want %d, true, nil", k, n, ws, err, len(in))
			}
		}
	}
}

func TestReadRequestHeadOversize(t *testing.T) {
	in := crlfHead("GET / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade",
		"X-Big: "+strings.Repeat("a", maxHeadBytes))
	for _, r := range []io.Reader{strings.NewReader(in), iotest.OneByteReader(strings.NewReader(in))} {
		n, ws, err := checkHead(t, r, in, maxHeadBytes)
		if ws || n != maxHeadBytes || err != nil {
			t.Errorf("n, websocket, err = %d, %v, %v; want %d, false, nil", n, ws, err, maxHeadBytes)
		}
	}
	// A head that fits exactly still matches.
	small := crlfHead("GET / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade")
	if n, ws, _ := checkHead(t, strings.NewReader(small), small, len(small)); !ws || n != len(small) {
		t.Errorf("exact fit: n, websocket = %d, %v", n, ws)
	}
	if n, ws, err := checkHead(t, strings.NewReader(small), small, 0); ws || n != 0 || err != nil {
		t.Errorf("empty buf: n, websocket, err = %d, %v, %v", n, ws, err)
	}
}

// onceReader returns data on the first Read and fails the test on any other.
type onceReader struct {
	t    *testing.T
	data string
	done bool
}

func (r *onceReader) Read(p []byte) (int, error) {
	if r.done {
		r.t.Fatal("second Read after the answer was known")
	}
	r.done = true
	return copy(p, r.data), nil
}

func TestReadRequestHeadEarlyReject(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"TLS record", "\x16"},
		{"TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc"},
		{"NUL", "\x00"},
		{"binary", "\xff\xfe"},
		{"POST", "POST / HTTP/1.1\r\n"},
		{"long method", strings.Repeat("A", 40)},
		{"non-tchar in method", "GE(T"},
		{"lowercase get", "get"},
		{"GET without space", "GETX"},
		{"control in target", "GET /\x00"},
		{"bare CR in request line", "GET /\rx"},
		{"HTTP/1.0", "GET / HTTP/1.0\r\n"},
		{"HTTP/0.9", "GET /\r\n"},
		{"PROXY header", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ws, err := checkHead(t, &onceReader{t: t, data: tc.data}, tc.data, maxHeadBytes)
			if ws || n != len(tc.data) || err != nil {
				t.Errorf("n, websocket, err = %d, %v, %v; want %d, false, nil", n, ws, err, len(tc.data))
			}
		})
	}
}

func TestReadRequestHeadErrors(t *testing.T) {
	partial := "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConn"
	t.Run("EOF mid-head", func(t *testing.T) {
		n, ws, err := checkHead(t, iotest.OneByteReader(strings.NewReader(partial)), partial, maxHeadBytes)
		if ws || n != len(partial) || err != io.EOF {
			t.Errorf("n, websocket, err = %d, %v, %v; want %d, false, EOF", n, ws, err, len(partial))
		}
	})
	t.Run("deadline", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader(partial), iotest.ErrReader(os.ErrDeadlineExceeded))
		n, ws, err := checkHead(t, r, partial, maxHeadBytes)
		if ws || n != len(partial) || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("n, websocket, err = %d, %v, %v; want %d, false, deadline", n, ws, err, len(partial))
		}
	})
	t.Run("error with complete head", func(t *testing.T) {
		r := iotest.TimeoutReader(strings.NewReader(chromeHead))
		n, ws, err := checkHead(t, r, chromeHead, maxHeadBytes)
		if !ws || n != len(chromeHead) || err != nil {
			t.Errorf("n, websocket, err = %d, %v, %v; want %d, true, nil", n, ws, err, len(chromeHead))
		}
	})
	t.Run("no progress", func(t *testing.T) {
		n, ws, err := readRequestHead(zeroReader{}, make([]byte, 16))
		if ws || n != 0 || err != io.ErrNoProgress {
			t.Errorf("n, websocket, err = %d, %v, %v; want 0, false, ErrNoProgress", n, ws, err)
		}
	})
	t.Run("invalid count", func(t *testing.T) {
		n, ws, err := readRequestHead(badReader{}, make([]byte, 16))
		if ws || n != 0 || err == nil {
			t.Errorf("n, websocket, err = %d, %v, %v; want 0, false, error", n, ws, err)
		}
	})
}

// zeroReader always returns 0, nil.
type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// badReader claims to have read more than asked for.
type badReader struct{}

func (badReader) Read(p []byte) (int, error) { return len(p) + 1, nil }

func FuzzReadRequestHead(f *testing.F) {
	for _, tc := range headCases {
		f.Add([]byte(tc.head), uint16(maxHeadBytes))
		f.Add([]byte(tc.head), uint16(len(tc.head)/2))
	}
	f.Fuzz(func(t *testing.T, in []byte, size uint16) {
		size %= maxHeadBytes + 1
		var results [2]bool
		for i, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in))} {
			buf := make([]byte, size)
			n, ws, err := readRequestHead(r, buf)
			if n < 0 || n > len(buf) || n > len(in) {
				t.Fatalf("n = %d, len(buf) = %d, len(in) = %d", n, len(buf), len(in))
			}
			if !bytes.Equal(buf[:n], in[:n]) {
				t.Fatalf("buf[:n] = %q is not a prefix of %q", buf[:n], in)
			}
			if err != nil && err != io.EOF {
				t.Fatalf("err = %v", err)
			}
			if ws && !isWebSocketUpgrade(buf[:n]) {
				t.Fatalf("websocket for %q but isWebSocketUpgrade disagrees", buf[:n])
			}
			results[i] = ws
		}
		if results[0] != results[1] {
			t.Fatalf("answer depends on read sizes: whole %v, one byte %v for %q", results[0], results[1], in)
		}
	})
}
