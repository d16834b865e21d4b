package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"sluice/l4"
)

// TestShippedConfigsServe loads every configs/*.toml with loopback
// backends and a test certificate for every name it routes, and probes each
// name with clients that offer h2 and http/1.1, http/1.1 alone and h2
// alone. Every handshake that succeeds must reach a backend that speaks
// the protocol negotiated (a browser that negotiates h2 with an HTTP/1.1
// server gets nothing); one that fails must fail with the
// no_application_protocol alert; and a browser's offer must always
// succeed.
func TestShippedConfigsServe(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("configs/*.toml: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, _, err := loadConfig(file)
			if err != nil {
				t.Fatal(err)
			}
			addrs, names := serveOnLoopback(t, cfg)
			for i, l := range cfg.Listeners {
				if l.TLS == nil {
					continue
				}
				for _, name := range names[i] {
					for _, offer := range [][]string{{"h2", "http/1.1"}, {"http/1.1"}, {"h2"}} {
						probe(t, addrs[i], name, offer, cfg)
					}
				}
			}
		})
	}
}

// serveOnLoopback rewrites cfg to serve on loopback (listeners on
// 127.0.0.1:0 with one test certificate for all their names, each
// upstream a backend that says which upstream it is and which protocol
// it was spoken to in), starts it, and returns the listeners' addresses
// and the server names each routes ("" for a client without SNI).
func serveOnLoopback(t *testing.T, cfg *l4.Config) ([]string, [][]string) {
	dir := t.TempDir()
	names := make([][]string, len(cfg.Listeners))
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		l.Address, l.ReusePort = "127.0.0.1:0", false
		names[i] = []string{""}
		for _, r := range l.Routes {
			for _, s := range r.SNI {
				names[i] = append(names[i], strings.Replace(s, "*", "sample", 1))
			}
		}
		if l.TLS != nil {
			var sans []string
			for _, r := range l.Routes {
				sans = append(sans, r.SNI...)
			}
			cert, key := testCertFor(t, dir, fmt.Sprint(i), append(sans, "localhost"), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
			l.TLS.Certificates = []l4.CertConfig{{Cert: cert, Key: key}}
		}
	}
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		u.Servers = []string{probeBackend(t, u.Name, u.SendProxy != "")}
	}
	p, err := l4.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
		<-served
	})
	var addrs []string
	for _, a := range p.Addrs() {
		addrs = append(addrs, a.String())
	}
	return addrs, names
}

// probe connects to addr as name, offering offer, speaks the negotiated
// protocol's first bytes and checks what the backend heard.
func probe(t *testing.T, addr, name string, offer []string, cfg *l4.Config) {
	t.Helper()
	what := fmt.Sprintf("name %q offering %q", name, offer)
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, NextProtos: offer, InsecureSkipVerify: true})
	if err != nil {
		if !strings.Contains(err.Error(), "no application protocol") {
			t.Errorf("%s: %v", what, err)
		} else if len(offer) > 1 {
			t.Errorf("%s: a browser's offer refused: %v", what, err)
		}
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	proto := c.ConnectionState().NegotiatedProtocol
	preface := "GET / HTTP/1.1\r\nHost: " + name + "\r\n\r\n"
	if proto == "h2" {
		preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	}
	if _, err := io.WriteString(c, preface); err != nil {
		t.Errorf("%s: write: %v", what, err)
		return
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Errorf("%s (negotiated %q): no answer: %v", what, proto, err)
		return
	}
	var upstream, heard string
	fmt.Sscan(line, &upstream, &heard)
	if proto == "" {
		return // no protocol negotiated: the client speaks what it likes
	}
	for _, u := range cfg.Upstreams {
		if u.Name == upstream && (heard != proto || !slices.Contains(u.Protocols, heard)) {
			t.Errorf("%s: negotiated %q, and upstream %q, which speaks %q, heard %s", what, proto, upstream, u.Protocols, heard)
		}
	}
}

// probeBackend starts a backend that reads an optional PROXY header and a
// first line, and answers "<upstream> <protocol>" for the protocol the
// line belongs to.
func probeBackend(t *testing.T, upstream string, proxy bool) string {
	return serveLoopback(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		if proxy {
			if _, err := proxyproto.Read(br); err != nil {
				return
			}
		}
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		heard := "http/1.1"
		if strings.HasPrefix(line, "PRI * HTTP/2.0") {
			heard = "h2"
		}
		fmt.Fprintf(c, "%s %s\n", upstream, heard)
	})
}

// serveLoopback serves handle, on a goroutine per connection, on a
// loopback listener that is closed at cleanup, and returns its address.
func serveLoopback(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}
