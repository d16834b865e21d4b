package l4

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// TestByteAtATime: a client that sends its PROXY header, and then its
// ClientHello, one byte per segment is served like any other on a
// terminating listener behind a proxy; a second client meanwhile is not
// held up by it. (TestPassthroughSplitHello does the same for a
// passthrough listener.)
func TestByteAtATime(t *testing.T) {
	t.Run("proxy header then handshake", func(t *testing.T) {
		w := newWorld(t)
		b, got := ppBackend(w)
		_, addrs := w.serve(ppProxyInConfig(w, b.addr(), "v2", "127.0.0.0/8"))
		raw := ppDial(t, addrs[0])
		raw.SetNoDelay(true)
		raw.SetDeadline(time.Now().Add(testTimeout))
		src := &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 4444}
		hdr := ppFormat(t, proxyproto.HeaderProxyFromAddrs(2, src, raw.RemoteAddr()))
		slow := splitConn{raw, 1}
		if _, err := slow.Write(hdr); err != nil {
			t.Fatal(err)
		}
		// Meanwhile, another client goes through at once.
		other, err := ppDialTLS(w, addrs[0], ppFormat(t, proxyproto.HeaderProxyFromAddrs(2,
			&net.TCPAddr{IP: net.ParseIP("203.0.113.10"), Port: 5555}, raw.RemoteAddr())), false)
		if err != nil {
			t.Fatalf("the other client: %v", err)
		}
		ppEcho(t, other, "not held up")
		other.Close()
		ppHeader(t, got)

		c := tls.Client(slow, &tls.Config{ServerName: "localhost", RootCAs: w.pool})
		if err := c.Handshake(); err != nil {
			t.Fatalf("handshake one byte at a time: %v", err)
		}
		ppEcho(t, c, "slow but whole")
		if h := ppHeader(t, got); h.SourceAddr.String() != src.String() {
			t.Errorf("backend saw %v, want %v", h.SourceAddr, src)
		}
		c.Close()
	})
}

// TestBackendNeverAnswers: a backend that accepts and never answers holds
// a connection only for the idle timeout, which then ends it with its
// reason, aborting both sides; other connections are served meanwhile.
func TestBackendNeverAnswers(t *testing.T) {
	w := newWorld(t)
	mute := w.backend(func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(testTimeout))
		c.Read(make([]byte, 1<<16)) // takes the request, says nothing
		c.Read(make([]byte, 1))     // until sluice gives up
	})
	cfg := plainConfig(w, func(l *ListenerConfig) { l.IdleTimeout = Duration{200 * time.Millisecond} })
	cfg.Upstreams[0].Servers = []string{mute.addr()}
	_, addrs := w.serve(cfg)
	c := dialFrom(t, "127.0.0.1", addrs[0])
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	expectClosed(t, c)
	w.waitLog("msg=access", "reason=idle_timeout")
}
