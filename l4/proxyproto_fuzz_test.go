package l4

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"sluice/tlsterm"
)

// FuzzReadProxyHeader feeds arbitrary bytes, as a trusted peer could send
// them, to readProxyHeader over a net.Pipe whose far end writes them and
// closes. The reader must not panic or wait past the close; a header it
// accepts must be one the whole-buffer parser accepts from the same bytes,
// with the bytes after it handed back in order and the addresses sluice
// then uses for logs and outgoing PROXY headers of the kind the command
// and transport say. Seeds: testdata/fuzz/FuzzReadProxyHeader and the
// headers sluice itself sends.
func FuzzReadProxyHeader(f *testing.F) {
	src, dst := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 9), Port: 4444}, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 443}
	src6, dst6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::9"), Port: 4444}, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}
	info := &tlsterm.Info{SNI: "app.example.test", ALPN: "h2", Version: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256", ClientCN: "client", ClientCert: true}
	hello := &tlsterm.Hello{ServerName: "pass.example.test"}
	for _, tc := range []struct {
		version  int
		src, dst net.Addr
		tls      *tlsterm.Info
		hello    *tlsterm.Hello
	}{
		{1, src, dst, nil, nil},
		{1, src6, dst6, nil, nil},
		{2, src, dst, info, nil},
		{2, src6, dst6, nil, hello},
	} {
		h, err := proxyHeader(tc.version, tc.src, tc.dst, tc.tls, tc.hello, "0a1b2c3d-42")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(h)
		f.Add(append(h, "\x16\x03\x01\x00\x05hello"...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		defer server.Close()
		defer client.Close() // unblocks the writer if a check fails first
		go func() {
			if len(in) > 0 { // an empty write waits for a read
				client.Write(in)
			}
			client.Close()
		}()
		// The peer has closed by the time the reader runs dry: the
		// timeout only bounds a reader that waits anyway.
		const timeout = 5 * time.Second
		start := time.Now()
		h, rest, err := readProxyHeader(server, timeout)
		if waited := time.Since(start); waited >= timeout {
			t.Fatalf("waited %v after the peer closed: %v", waited, err)
		}
		// Whatever the reader left unread, so that the writer finishes.
		unread, rerr := io.ReadAll(server)
		if rerr != nil {
			t.Fatalf("read the rest: %v", rerr)
		}
		if err != nil {
			checkProxyHeaderError(t, in, h, rest, err)
			return
		}
		if h == nil {
			t.Fatal("no header and no error")
		}
		after := append(bytes.Clone(rest), unread...)
		if !bytes.HasSuffix(in, after) {
			t.Fatalf("rest %q + unread %q is not a suffix of the input %q", rest, unread, in)
		}
		raw := in[:len(in)-len(after)]
		// The same bytes as one buffer: the same header, all of them used.
		br := bufio.NewReader(bytes.NewReader(raw))
		want, werr := proxyproto.Read(br)
		if werr != nil || !h.EqualsTo(want) {
			t.Fatalf("read from the pipe: %+v; from the %d header bytes %q: %+v, %v", h, len(raw), raw, want, werr)
		}
		if br.Buffered() != 0 {
			t.Fatalf("the header is %d bytes of %q, yet the parser did not need the last %d", len(raw), raw, br.Buffered())
		}
		checkProxyHeaderAddrs(t, h)
	})
}

// checkProxyHeaderError checks what readProxyHeader returns on an error:
// nothing else, and an error that wraps its cause.
func checkProxyHeaderError(t *testing.T, in []byte, h *proxyproto.Header, rest []byte, err error) {
	t.Helper()
	if h != nil || rest != nil {
		t.Fatalf("error %v with header %+v and rest %q", err, h, rest)
	}
	if errors.Unwrap(err) == nil {
		t.Fatalf("error %q (%T) wraps nothing", err, err)
	}
	// A health check's connect-and-close is told apart from a peer that
	// sent something else.
	if hung := errors.Is(err, errHungUp); hung != (len(in) == 0) {
		t.Fatalf("%d bytes of input: error %v", len(in), err)
	}
}

// checkProxyHeaderAddrs checks the addresses of a header readProxyHeader
// accepted against its command and transport: conn.open takes those of a
// PROXY command as the client's and the local address, for the logs and
// the PROXY headers sluice sends upstream, which must carry them.
func checkProxyHeaderAddrs(t *testing.T, h *proxyproto.Header) {
	t.Helper()
	if h.Version != 1 && h.Version != 2 {
		t.Fatalf("version %d", h.Version)
	}
	if !h.Command.IsProxy() {
		return // LOCAL, UNKNOWN: conn.open keeps the socket's addresses
	}
	src, dst := h.SourceAddr, h.DestinationAddr
	if src == nil || dst == nil {
		t.Fatalf("PROXY command with addresses %v, %v", src, dst)
	}
	_ = src.String() + src.Network() + dst.String() + dst.Network() // what logs do
	tp := h.TransportProtocol
	var ok bool
	switch {
	case tp.IsUnix():
		_, _, ok = h.UnixAddrs()
	case tp.IsStream():
		var s, d *net.TCPAddr
		if s, d, ok = h.TCPAddrs(); ok {
			for _, a := range []*net.TCPAddr{s, d} {
				if tp.IsIPv4() && a.IP.To4() == nil || tp.IsIPv6() && len(a.IP) != net.IPv6len || a.Port < 0 || a.Port > 65535 {
					t.Fatalf("transport %#x with address %v (%d bytes)", byte(tp), a, len(a.IP))
				}
			}
		}
	case tp.IsDatagram():
		_, _, ok = h.UDPAddrs()
	}
	if !ok {
		t.Fatalf("transport %#x with addresses %T, %T", byte(tp), src, dst)
	}
	for _, version := range []int{1, 2} {
		b, err := proxyHeader(version, src, dst, nil, nil, "id")
		if err != nil {
			t.Fatalf("the v%d header for %v -> %v: %v", version, src, dst, err)
		}
		out, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("the v%d header sent for %v -> %v: %q: %v", version, src, dst, b, err)
		}
		if version == 1 && (tp.IsUnix() || tp.IsDatagram()) {
			continue // v1 says UNKNOWN for these
		}
		if out.SourceAddr.String() != src.String() || out.DestinationAddr.String() != dst.String() {
			t.Fatalf("v%d: sent %v -> %v, the backend reads %v -> %v", version, src, dst, out.SourceAddr, out.DestinationAddr)
		}
	}
}
