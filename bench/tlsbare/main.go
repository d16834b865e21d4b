// Command tlsbare is a bare crypto/tls server for separating sluice's own
// costs from crypto/tls's in the handshake and small-request scenarios
// (bench/README.md, "Where the time goes"): it completes the handshake,
// reads request heads and answers each from memory (S3: one, then it
// closes; with -keepalive, S1: as many as come), as sluice's path would
// without the backend. It uses the same TLS settings as sluice's bench
// configuration.
//
//	go run ./bench/tlsbare -listen 127.0.0.1:25000 -cert C -key K
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime/debug"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:25000", "address to serve TLS on")
	cert := flag.String("cert", "", "PEM certificate chain")
	key := flag.String("key", "", "PEM private key")
	pprof := flag.String("pprof", "", "address for net/http/pprof, if any")
	gc := flag.Int("gc", 25, "GC percent (sluice's default is 25)")
	keepalive := flag.Bool("keepalive", false, "answer every request of a connection (S1), not only the first (S3)")
	flag.Parse()
	debug.SetGCPercent(*gc)
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13, SessionTicketsDisabled: true}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *pprof != "" {
		go func() { log.Println(http.ListenAndServe(*pprof, nil)) }()
	}
	fmt.Fprintln(os.Stderr, "tlsbare: serving on", ln.Addr())
	body := make([]byte, 200)
	conn := "close"
	if *keepalive {
		conn = "keep-alive"
	}
	resp := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n%s", len(body), conn, body)
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(tls.Server(c, cfg), resp, *keepalive)
	}
}

// serve answers request heads, one or all, and closes.
func serve(c *tls.Conn, resp []byte, keepalive bool) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 { // the blank line ending the head
				break
			}
		}
		if _, err := c.Write(resp); err != nil || !keepalive {
			return
		}
	}
}
