package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// client opens TLS connections to the fleet through HAProxy, from the
// client's own address.
type client struct {
	lb      string // HAProxy's frontend
	src     *net.TCPAddr
	roots   *x509.CertPool
	name    string
	timeout time.Duration // dial, handshake and greeting together
}

func newClient(lb, srcIP, certFile, serverName string) (*client, error) {
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", certFile)
	}
	return &client{lb: lb, src: &net.TCPAddr{IP: net.ParseIP(srcIP)}, roots: roots, name: serverName, timeout: 10 * time.Second}, nil
}

// tlsConfig is the client's TLS configuration for one TLS version (0: the
// highest) and a session cache (nil: none).
func (c *client) tlsConfig(version uint16, cache tls.ClientSessionCache) *tls.Config {
	cfg := &tls.Config{RootCAs: c.roots, ServerName: c.name, ClientSessionCache: cache}
	if version != 0 {
		cfg.MinVersion, cfg.MaxVersion = version, version
	}
	return cfg
}

// session is one open connection through the fleet, past the backend's
// greeting.
type session struct {
	conn  *tls.Conn
	br    *bufio.Reader
	local string // the client's own address, as the backend should see it
	greeting
	resumed bool
}

// greeting is the backend's first line.
type greeting struct {
	instance int
	src, dst string // what the backend read in the PROXY header
}

// stage says how far a failed open got, for the report.
type stage string

const (
	stageDial      stage = "dial"
	stageHandshake stage = "handshake"
	stageGreeting  stage = "greeting"
	stageEcho      stage = "echo"
)

// openError is a connection that failed, with how far it got.
type openError struct {
	stage stage
	local string
	err   error
}

func (e *openError) Error() string { return fmt.Sprintf("%s (from %s): %v", e.stage, e.local, e.err) }
func (e *openError) Unwrap() error { return e.err }

// open dials HAProxy, completes the TLS handshake and reads the backend's
// greeting. Reading it also processes a TLS 1.3 NewSessionTicket, which
// sluice sends right after the handshake.
func (c *client) open(ctx context.Context, cfg *tls.Config) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	d := net.Dialer{LocalAddr: c.src}
	raw, err := d.DialContext(ctx, "tcp", c.lb)
	if err != nil {
		return nil, &openError{stage: stageDial, err: err}
	}
	local := raw.LocalAddr().String()
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, &openError{stage: stageHandshake, local: local, err: err}
	}
	deadline, _ := ctx.Deadline()
	conn.SetReadDeadline(deadline)
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, &openError{stage: stageGreeting, local: local, err: err}
	}
	g, err := parseGreeting(line)
	if err != nil {
		conn.Close()
		return nil, &openError{stage: stageGreeting, local: local, err: err}
	}
	conn.SetReadDeadline(time.Time{})
	return &session{conn: conn, br: br, local: local, greeting: g, resumed: conn.ConnectionState().DidResume}, nil
}

func parseGreeting(line string) (greeting, error) {
	var g greeting
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "client":
			g.src = v
		case "dst":
			g.dst = v
		case "instance":
			g.instance, _ = strconv.Atoi(v)
		}
	}
	if g.instance < 1 || g.instance > 3 {
		return g, fmt.Errorf("not a greeting: %q", line)
	}
	return g, nil
}

// echo sends msg as a line and waits up to d for it to come back.
func (s *session) echo(msg string, d time.Duration) error {
	s.conn.SetDeadline(time.Now().Add(d))
	if _, err := fmt.Fprintf(s.conn, "%s\n", msg); err != nil {
		return err
	}
	line, err := s.br.ReadString('\n')
	if err != nil {
		return err
	}
	if line != msg+"\n" {
		return fmt.Errorf("echo %q, want %q", line, msg)
	}
	return nil
}

// close ends the connection cleanly: close_notify, then the socket.
func (s *session) close() { s.conn.Close() }

// clientAddrOK says whether the backend saw the client's own address.
func (s *session) clientAddrOK() bool { return s.src == s.local }

// pinnedCache is a session cache that keeps the first ticket it is given
// and ignores the rest, so that every later connection offers the ticket
// of the instance that issued the first one.
type pinnedCache struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (p *pinnedCache) Get(string) (*tls.ClientSessionState, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cs, p.cs != nil
}

func (p *pinnedCache) Put(_ string, cs *tls.ClientSessionState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cs == nil && cs != nil {
		p.cs = cs
	}
}

func (p *pinnedCache) has() bool {
	_, ok := p.Get("")
	return ok
}
