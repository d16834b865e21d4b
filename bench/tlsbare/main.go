// Command tlsbare is a bare crypto/tls server for separating sluice's own
// costs from crypto/tls's in the handshake and small-request scenarios
// (bench/README.md, "Where the time goes"): it completes the handshake,
// reads request heads and answers each from memory, closing after one that
// says "Connection: close" (S3, S3r) and keeping the connection otherwise
// (S1), as sluice's path would without the backend. It uses the same TLS
// settings as sluice's bench configuration: session tickets off, and on
// for a second listener (-listen-resume, S3r).
//
// With -backend it is instead the least a TLS proxy can be in Go: after the
// handshake it dials the backend and copies each way on a goroutine of its
// own through pooled buffers, and closes both connections when either
// direction ends (no half-close, PROXY header, limits, logs or parking).
// The i-th address of each listen list is proxied to the i-th backend.
// Beside sluice it separates what the backend leg costs in Go and the
// kernel from what sluice's relay adds to it.
//
//	go run ./bench/tlsbare -listen 127.0.0.1:25000[,...] [-listen-resume 127.0.0.1:25005[,...]] -cert C -key K [-backend 127.0.0.1:19080[,...]]
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime/debug"
	"strings"
	"sync"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:25000", "addresses to serve TLS on, comma-separated")
	cert := flag.String("cert", "", "PEM certificate chain")
	key := flag.String("key", "", "PEM private key")
	pprof := flag.String("pprof", "", "address for net/http/pprof, if any")
	gc := flag.Int("gc", 100, "GC percent (Go's default; sluice runs at 25 for large heaps and up to 100 for small ones)")
	resume := flag.String("listen-resume", "", "addresses to serve TLS with session tickets on, comma-separated, if any")
	backend := flag.String("backend", "", "TCP addresses, comma-separated, to proxy the connections of each listen list's addresses to, in order, instead of answering from memory")
	flag.Parse()
	debug.SetGCPercent(*gc)
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13, SessionTicketsDisabled: true}
	if *pprof != "" {
		go func() { log.Println(http.ListenAndServe(*pprof, nil)) }()
	}
	rcfg := cfg.Clone()
	rcfg.SessionTicketsDisabled = false
	for _, l := range []struct {
		addrs string
		cfg   *tls.Config
	}{{*resume, rcfg}, {*listen, cfg}} {
		backends := strings.Split(*backend, ",")
		for i, a := range strings.Split(l.addrs, ",") {
			if a != "" {
				ln, err := net.Listen("tcp", a)
				if err != nil {
					log.Fatal(err)
				}
				go serveOn(ln, l.cfg, backends[min(i, len(backends)-1)])
			}
		}
	}
	select {}
}

// serveOn accepts TLS connections on ln until it fails, and answers them
// or, with a backend, proxies them to it.
func serveOn(ln net.Listener, cfg *tls.Config, backend string) {
	fmt.Fprintln(os.Stderr, "tlsbare: serving on", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		if backend != "" {
			go proxy(tls.Server(c, cfg), backend)
		} else {
			go serve(tls.Server(c, cfg))
		}
	}
}

var buffers = sync.Pool{New: func() any { return new([16 << 10]byte) }}

// proxy relays c to a new connection to backend until either direction
// ends, then closes both.
func proxy(c *tls.Conn, backend string) {
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return
	}
	b, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	go copyThenClose(b, c, c, b)
	copyThenClose(c, b, c, b)
}

// copyThenClose copies src to dst, then closes both ends.
func copyThenClose(dst io.Writer, src io.Reader, a, b io.Closer) {
	buf := buffers.Get().(*[16 << 10]byte)
	// The structs hide net.TCPConn's ReadFrom and WriteTo, which would
	// copy through a buffer of their own.
	io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf[:])
	buffers.Put(buf)
	a.Close()
	b.Close()
}

// Answers from memory, as the bench backend's: 200 bytes of body.
var (
	keepAlive = response("keep-alive")
	closing   = response("close")
)

func response(conn string) []byte {
	body := make([]byte, 200)
	return fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n%s", len(body), conn, body)
}

// serve answers request heads until one asks to close, or the client does.
func serve(c *tls.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		last := false
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 { // the blank line ending the head
				break
			}
			if bytes.HasPrefix(bytes.ToLower(line), []byte("connection: close")) {
				last = true
			}
		}
		resp := keepAlive
		if last {
			resp = closing
		}
		if _, err := c.Write(resp); err != nil || last {
			return
		}
	}
}
