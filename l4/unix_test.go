package l4

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/pires/go-proxyproto"
)

// TestUnixListenerAndUpstream runs a TLS listener on a unix socket in front
// of a unix-socket backend that reads PROXY v2, with a stale socket file
// left where the listener binds (as after a crash).
func TestUnixListenerAndUpstream(t *testing.T) {
	w := newWorld(t)
	dir, err := os.MkdirTemp("", "sluice-unix-") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	front, back := filepath.Join(dir, "front.sock"), filepath.Join(dir, "back.sock")

	// A stale socket: bound, then its listener gone without unlinking it.
	stale, err := net.Listen("unix", front)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	bl, err := net.Listen("unix", back)
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	headers := make(chan *proxyproto.Header, 1)
	go func() {
		c, err := bl.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			headers <- nil
			return
		}
		headers <- h
		io.Copy(c, br)
		c.(*net.UnixConn).CloseWrite()
	}()

	cfg := w.simple("unix:" + back)
	cfg.Listeners[0].Address = "unix:" + front
	cfg.Upstreams[0].SendProxy = "v2"
	w.serve(cfg)

	raw, err := net.Dial("unix", front)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{RootCAs: w.pool, ServerName: "localhost"})
	defer c.Close()
	if _, err := c.Write([]byte("over unix sockets")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	raw.(*net.UnixConn).CloseWrite()
	if got := readAll(t, c); string(got) != "over unix sockets" {
		t.Fatalf("echo: got %q", got)
	}
	h := <-headers
	if h == nil {
		t.Fatal("backend could not read the PROXY header")
	}
	if h.TransportProtocol != proxyproto.UnixStream {
		t.Errorf("PROXY v2 over unix sockets: transport %v, want UnixStream", h.TransportProtocol)
	}
	w.waitLog("msg=access", "server=unix:"+back, "reason=client_closed")
}
