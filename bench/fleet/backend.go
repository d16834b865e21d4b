package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// backend is the application server behind one sluice instance. It reads
// the PROXY v2 header sluice sends, logs the addresses in it, answers
// with a greeting line that says what it saw and which instance it sits
// behind, then echoes lines until the client closes:
//
//	client=127.0.0.99:41234 dst=127.0.0.10:39001 instance=2
type backend struct {
	n    int
	ln   net.Listener
	log  *os.File // one line per connection: the addresses it saw
	seen *sightings

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// sighting is one connection a backend accepted.
type sighting struct {
	instance int
	at       time.Time
	src, dst string // from the PROXY header; "" without one
	peer     string // the TCP peer: sluice
	sluiceID string // PP2_TYPE_UNIQUE_ID: the access log's conn=
}

// sightings are every backend's connections, by client address.
type sightings struct {
	mu    sync.Mutex
	bySrc map[string][]sighting
	bad   []string // connections without a usable PROXY header
}

func (s *sightings) add(g sighting) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bySrc[g.src] = append(s.bySrc[g.src], g)
}

func (s *sightings) addBad(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bad = append(s.bad, fmt.Sprintf(format, args...))
}

// seenSince lists the instances whose backends saw a connection from src
// at or after t.
func (s *sightings) seenSince(src string, t time.Time) []int {
	return s.seenBetween(src, t, time.Time{})
}

// seenBetween lists the instances whose backends saw a connection from src
// from t on and, unless until is zero, no later than until: the life of
// one connection, as a later one from the same port (the kernel reuses
// them) may have reached another instance.
func (s *sightings) seenBetween(src string, t, until time.Time) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var in []int
	for _, g := range s.bySrc[src] {
		if !g.at.Before(t) && (until.IsZero() || !g.at.After(until)) {
			in = append(in, g.instance)
		}
	}
	return in
}

func startBackend(n int, addr, logPath string, seen *sightings) (*backend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("backend %d: %w", n, err)
	}
	f, err := os.Create(logPath)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("backend %d log: %w", n, err)
	}
	b := &backend{n: n, ln: ln, log: f, seen: seen, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: the load is bounded
			continue
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go b.serveConn(c)
	}
}

func (b *backend) serveConn(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := proxyproto.Read(br)
	c.SetReadDeadline(time.Time{})
	g := sighting{instance: b.n, at: time.Now(), peer: c.RemoteAddr().String()}
	if err != nil {
		// sluice always sends one (send_proxy = "v2"): a connection
		// without is a finding, answered so the client sees it too.
		b.seen.addBad("backend %d: connection from %s without a PROXY header: %v", b.n, g.peer, err)
	} else {
		g.src, g.dst = h.SourceAddr.String(), h.DestinationAddr.String()
		if tlvs, err := h.TLVs(); err == nil {
			for _, t := range tlvs {
				if t.Type == proxyproto.PP2_TYPE_UNIQUE_ID {
					g.sluiceID = string(t.Value)
				}
			}
		}
	}
	b.seen.add(g)
	fmt.Fprintf(b.log, "%s client=%s dst=%s peer=%s conn=%s\n", g.at.Format(time.RFC3339Nano), g.src, g.dst, g.peer, g.sluiceID)
	if _, err := fmt.Fprintf(c, "client=%s dst=%s instance=%d\n", g.src, g.dst, b.n); err != nil {
		return
	}
	b.echo(c, br)
}

// echo sends back each line it reads, until the client's end.
func (b *backend) echo(w io.Writer, br *bufio.Reader) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		if _, err := w.Write(line); err != nil {
			return
		}
	}
}

// close stops accepting, closes every connection and waits for them.
func (b *backend) close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
	b.log.Close()
}
