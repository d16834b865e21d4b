package l4

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reloadConfig is a TLS listener routing to upstream up; both tagged
// backends "a" and "b" are upstreams.
func reloadConfig(w *world, a, b *backend, up string) *Config {
	return &Config{
		Listeners: []ListenerConfig{{
			Name:    "web",
			Address: "127.0.0.1:0",
			TLS:     &TLSConfig{Certificates: []CertConfig{w.cert("localhost")}},
			Routes:  []RouteConfig{{Name: "r", Upstream: up}},
		}},
		Upstreams: []UpstreamConfig{
			{Name: "a", Servers: []string{a.addr()}},
			{Name: "b", Servers: []string{b.addr()}},
		},
	}
}

func reload(t *testing.T, p *Proxy, cfg *Config) Changes {
	t.Helper()
	ch, err := p.Reload(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	return ch
}

// dialAround makes loops×each connection attempts to addr (see dialLoop)
// from loops goroutines, and calls change(i) for i from 0 to times-1, each
// time after another every attempts; it returns how many attempts failed.
func dialAround(w *world, addr string, loops, each, every, times int, change func(i int)) int64 {
	var failed atomic.Int64
	var wg sync.WaitGroup
	progress := make(chan struct{}, loops*each)
	for range loops {
		wg.Add(1)
		go dialLoop(w, addr, each, &failed, progress, &wg)
	}
	for i := range times {
		for range every {
			<-progress
		}
		change(i)
	}
	wg.Wait()
	return failed.Load()
}

// dialLoop dials addr over TLS n times, handshaking and reading the
// backend's tag, counts the attempts that failed and reports each on
// progress.
func dialLoop(w *world, addr string, n int, failed *atomic.Int64, progress chan<- struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for range n {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: testTimeout}, "tcp", addr,
			&tls.Config{RootCAs: w.pool, ServerName: "localhost"})
		if err == nil {
			c.SetDeadline(time.Now().Add(testTimeout))
			buf := make([]byte, 2)
			_, err = c.Read(buf)
			c.Close()
		}
		if err != nil {
			failed.Add(1)
		}
		progress <- struct{}{}
	}
}

// TestReloadInPlace: a reload that moves a route to another upstream
// keeps the listener's socket, refuses no connection attempt made during
// it, sends every connection accepted after it to the new upstream, and
// leaves a connection that was open before it alone.
func TestReloadInPlace(t *testing.T) {
	w := newWorld(t)
	a, b := w.backend(tagged("a")), w.backend(tagged("b"))
	p, addrs := w.serve(reloadConfig(w, a, b, "a"))

	before := w.mustDialTLS(addrs[0], nil)
	if tag := readLine(t, before); tag != "a" {
		t.Fatalf("tag %q, want a", tag)
	}

	var ch Changes
	// 200 attempts; the reload lands after the first 10.
	if f := dialAround(w, addrs[0], 4, 50, 10, 1, func(int) { ch = reload(t, p, reloadConfig(w, a, b, "b")) }); f != 0 {
		t.Errorf("%d of 200 connection attempts failed during the reload", f)
	}
	if got := p.Addrs()[0].String(); got != addrs[0] {
		t.Errorf("listener address %s after the reload, want %s (the same socket)", got, addrs[0])
	}
	if !slicesEqual(ch.ListenersChanged, []string{"127.0.0.1:0"}) || len(ch.ListenersAdded)+len(ch.ListenersRemoved) != 0 {
		t.Errorf("changes = %+v", ch)
	}

	after := w.mustDialTLS(addrs[0], nil)
	if tag := readLine(t, after); tag != "b" {
		t.Errorf("a connection after the reload went to %q, want b", tag)
	}
	echoLine(t, before, "still here")
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// TestReloadInvalid: a configuration that does not validate, or whose new
// listener cannot be bound, changes nothing.
func TestReloadInvalid(t *testing.T) {
	w := newWorld(t)
	a, b := w.backend(tagged("a")), w.backend(tagged("b"))
	p, addrs := w.serve(reloadConfig(w, a, b, "a"))

	bad := reloadConfig(w, a, b, "nope")
	if _, err := p.Reload(context.Background(), bad); err == nil || !strings.Contains(err.Error(), `listener[0].route[0].upstream`) {
		t.Errorf("Reload(unknown upstream) = %v", err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := reloadConfig(w, a, b, "b")
	taken.Listeners = append(taken.Listeners, ListenerConfig{Name: "busy", Address: busy.Addr().String(),
		Routes: []RouteConfig{{Upstream: "b"}}})
	if _, err := p.Reload(context.Background(), taken); err == nil || !strings.Contains(err.Error(), "listener[1].address") {
		t.Errorf("Reload(address in use) = %v", err)
	}
	c := w.mustDialTLS(addrs[0], nil)
	if tag := readLine(t, c); tag != "a" {
		t.Errorf("after failed reloads, tag %q, want a", tag)
	}
}

// TestReloadListeners: a listener added by a reload is bound and serves; a
// removed one stops accepting and closes its socket, while its open
// connection goes on.
func TestReloadListeners(t *testing.T) {
	w := newWorld(t)
	a, b := w.backend(tagged("a")), w.backend(tagged("b"))
	cfg := reloadConfig(w, a, b, "a")
	sock1 := "unix:" + filepath.Join(w.dir, "one.sock")
	sock2 := "unix:" + filepath.Join(w.dir, "two.sock")
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Name: "one", Address: sock1, Routes: []RouteConfig{{Upstream: "a"}}})
	p, _ := w.serve(cfg)

	held, err := net.Dial("unix", strings.TrimPrefix(sock1, "unix:"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if tag := readLine(t, held); tag != "a" {
		t.Fatalf("tag %q", tag)
	}

	next := reloadConfig(w, a, b, "a")
	next.Listeners = append(next.Listeners, ListenerConfig{Name: "two", Address: sock2, Routes: []RouteConfig{{Upstream: "b"}}})
	ch := reload(t, p, next)
	if !slicesEqual(ch.ListenersAdded, []string{sock2}) || !slicesEqual(ch.ListenersRemoved, []string{sock1}) {
		t.Errorf("changes = %+v", ch)
	}
	if _, err := net.Dial("unix", strings.TrimPrefix(sock1, "unix:")); err == nil {
		t.Error("the removed listener still accepts")
	}
	c, err := net.Dial("unix", strings.TrimPrefix(sock2, "unix:"))
	if err != nil {
		t.Fatalf("the added listener: %v", err)
	}
	defer c.Close()
	if tag := readLine(t, c); tag != "b" {
		t.Errorf("added listener: tag %q, want b", tag)
	}
	echoLine(t, held, "the removed listener's connection goes on")
}

// TestReloadResumption: a session from before a reload resumes after it.
func TestReloadResumption(t *testing.T) {
	w := newWorld(t)
	a, b := w.backend(tagged("a")), w.backend(tagged("b"))
	p, addrs := w.serve(reloadConfig(w, a, b, "a"))
	cache := tls.NewLRUClientSessionCache(4)
	for i, up := range []string{"", "b"} {
		if up != "" {
			reload(t, p, reloadConfig(w, a, b, up))
		}
		c := w.mustDialTLS(addrs[0], &tls.Config{ClientSessionCache: cache})
		readLine(t, c) // TLS 1.3 tickets arrive after the handshake
		if resumed := c.ConnectionState().DidResume; resumed != (i > 0) {
			t.Errorf("connection %d: DidResume = %v", i, resumed)
		}
	}
}

// TestReloadForgetsOldServers: nothing of an earlier configuration is kept
// once its last connection has ended.
func TestReloadForgetsOldServers(t *testing.T) {
	w := newWorld(t)
	a, b := w.backend(tagged("a")), w.backend(tagged("b"))
	p, addrs := w.serve(reloadConfig(w, a, b, "a"))
	forgot := make(chan *Server, 5)
	p.mu.Lock()
	p.forgot = forgot
	first := p.gen.servers[0]
	p.mu.Unlock()
	c := w.mustDialTLS(addrs[0], nil)
	readLine(t, c)
	for i := range 5 {
		reload(t, p, reloadConfig(w, a, b, []string{"b", "a"}[i%2]))
	}
	waitForgot := func() *Server {
		t.Helper()
		select {
		case s := <-forgot:
			return s
		case <-time.After(testTimeout):
			t.Fatal("a retired server was not forgotten")
			return nil
		}
	}
	// The four that never had a connection go at once.
	for range 4 {
		if waitForgot() == first {
			t.Fatal("the server holding a connection was forgotten")
		}
	}
	if n := p.Retired(); n != 1 {
		t.Errorf("%d retired servers, want 1 (it holds a connection)", n)
	}
	c.Close()
	if waitForgot() != first {
		t.Error("another server was forgotten")
	}
	if n := p.Retired(); n != 0 {
		t.Errorf("%d retired servers kept after their last connection ended", n)
	}
}

// TestReloadSharesMaxConnections: the connections of the configuration
// before a reload count against the listener's limit after it.
func TestReloadSharesMaxConnections(t *testing.T) {
	w := newWorld(t)
	a, b := w.backend(tagged("a")), w.backend(tagged("b"))
	cfg := reloadConfig(w, a, b, "a")
	cfg.Listeners[0].MaxConnections = 1
	p, addrs := w.serve(cfg)
	first := w.mustDialTLS(addrs[0], nil)
	readLine(t, first)

	next := reloadConfig(w, a, b, "b")
	next.Listeners[0].MaxConnections = 1
	reload(t, p, next)
	// The kernel completes the handshake's TCP part; sluice must not
	// accept the connection while the old one holds the only slot.
	raw, err := net.DialTimeout("tcp", addrs[0], testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	second := tls.Client(raw, &tls.Config{RootCAs: w.pool, ServerName: "localhost"})
	second.SetDeadline(time.Now().Add(200 * time.Millisecond))
	var ne net.Error
	if err := second.Handshake(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("handshake with the slot taken: %v, want a timeout", err)
	}
	raw.Close()
	first.Close()
	raw2 := w.mustDialTLS(addrs[0], nil) // raw's handshake is spoilt; a new one
	if tag := readLine(t, raw2); tag != "b" {
		t.Errorf("tag %q, want b", tag)
	}
}

// TestReloadUnderLoad: ten reloads in a row while 200 long-lived
// connections are held and new ones are made all the time: no attempt
// fails and every held connection still echoes afterwards.
func TestReloadUnderLoad(t *testing.T) {
	w := newWorld(t)
	a, b := w.backend(tagged("a")), w.backend(tagged("b"))
	p, addrs := w.serve(reloadConfig(w, a, b, "a"))
	held := make([]*tls.Conn, 200)
	for i := range held {
		held[i] = w.mustDialTLS(addrs[0], nil)
		readLine(t, held[i])
	}
	// 160 attempts; a reload after every 8.
	if f := dialAround(w, addrs[0], 4, 40, 8, 10, func(i int) { reload(t, p, reloadConfig(w, a, b, []string{"b", "a"}[i%2])) }); f != 0 {
		t.Errorf("%d of 160 connection attempts failed across ten reloads", f)
	}
	for i, c := range held {
		echoLine(t, c, "held "+strings.Repeat("x", i%7))
	}
}

// TestReloadManyKeepsNothing: twenty reloads with a thousand idle
// connections held keep only the configuration those connections belong
// to.
func TestReloadManyKeepsNothing(t *testing.T) {
	w := newWorld(t)
	a, b := w.backend(tagged("a")), w.backend(tagged("b"))
	plain := func(up string) *Config {
		cfg := reloadConfig(w, a, b, up)
		cfg.Listeners[0].TLS = nil
		return cfg
	}
	p, addrs := w.serve(plain("a"))
	forgot := make(chan *Server, 20)
	p.mu.Lock()
	p.forgot = forgot
	p.mu.Unlock()
	conns := make([]net.Conn, 1000)
	for i := range conns {
		c, err := net.DialTimeout("tcp", addrs[0], testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for _, c := range conns {
		readLine(t, c) // each has reached its backend
	}
	before := memNow()
	for i := range 20 {
		reload(t, p, plain([]string{"b", "a"}[i%2]))
	}
	for range 19 { // all but the first configuration's server
		select {
		case <-forgot:
		case <-time.After(testTimeout):
			t.Fatal("a retired server without connections was kept")
		}
	}
	after := memNow()
	if n := p.Retired(); n != 1 {
		t.Errorf("%d retired servers, want 1", n)
	}
	if n := p.Active(); n != 1000 {
		t.Errorf("Active = %d, want 1000", n)
	}
	t.Logf("heap after 20 reloads with 1000 connections held: %+d KiB", (int64(after.heap)-int64(before.heap))>>10)
}
