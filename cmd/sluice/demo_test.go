package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pires/go-proxyproto"
)

// demoSafeBuffer is a bytes.Buffer safe for concurrent use.
type demoSafeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *demoSafeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *demoSafeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// demoInstance is a demo backend served on a 127.0.0.1:0 listener.
type demoInstance struct {
	addr   string
	stdout *demoSafeBuffer
	stop   func() error // cancels ctx and returns serve's result
}

func startDemo(t *testing.T, args ...string) *demoInstance {
	t.Helper()
	stdout := &demoSafeBuffer{}
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	b, err := newDemoBackend(args, stdout, logger)
	if err != nil {
		t.Fatalf("newDemoBackend(%q): %v", args, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.serve(ctx, ln) }()

	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(15 * time.Second):
				serveErr = errors.New("serve did not return within 15s of ctx cancel")
			}
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &demoInstance{addr: ln.Addr().String(), stdout: stdout, stop: stop}
}

func demoGet(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(body)
}

func TestDemoIndex(t *testing.T) {
	d := startDemo(t)

	// Use our own connection so we know the client address the backend sees.
	conn, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: sluice.test:8443\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	page := string(body)

	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q, want text/html", ct)
	}
	for _, want := range []string{
		"<title>sluice demo</title>",
		conn.LocalAddr().String(), // r.RemoteAddr
		"sluice.test:8443",        // r.Host
		"TLS was terminated by sluice",
		`(location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/echo"`,
		"hello from the browser",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page does not contain %q", want)
		}
	}

	if got, want := d.stdout.String(), "demo backend listening on http://"+d.addr+" (ws://"+d.addr+"/echo)\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

func TestDemoHealthzAndNotFound(t *testing.T) {
	d := startDemo(t)

	resp, body := demoGet(t, "http://"+d.addr+"/healthz")
	if resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 \"ok\\n\"", resp.StatusCode, body)
	}
	for _, path := range []string{"/nope", "/index.html", "/echo/x", "/healthz/"} {
		resp, _ := demoGet(t, "http://"+d.addr+path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, resp.StatusCode)
		}
	}
}

func TestDemoWebSocketEcho(t *testing.T) {
	d := startDemo(t)
	ctx := t.Context()

	c, _, err := websocket.Dial(ctx, "ws://"+d.addr+"/echo", &websocket.DialOptions{
		// Like a browser behind sluice: the Origin is not the backend's host.
		HTTPHeader: http.Header{"Origin": {"https://127.0.0.1:8443"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	for _, m := range []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte("hello from the test")},
		{websocket.MessageBinary, []byte{0, 1, 2, 0xfe, 0xff}},
		{websocket.MessageText, []byte("")},
	} {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != m.typ || !bytes.Equal(data, m.data) {
			t.Errorf("echo = %v %q, want %v %q", typ, data, m.typ, m.data)
		}
	}

	// A message at the 1 MiB read limit is echoed.
	big := bytes.Repeat([]byte("x"), 1<<20)
	c.SetReadLimit(2 << 20)
	if err := c.Write(ctx, websocket.MessageBinary, big); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.Read(ctx); err != nil || !bytes.Equal(data, big) {
		t.Fatalf("1 MiB echo: len %d, err %v", len(data), err)
	}

	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestDemoWebSocketReadLimit(t *testing.T) {
	d := startDemo(t)
	ctx := t.Context()

	c, _, err := websocket.Dial(ctx, "ws://"+d.addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 1<<20+1)); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Read(ctx)
	if st := websocket.CloseStatus(err); st != websocket.StatusMessageTooBig {
		t.Errorf("read after oversized message: status %v (err %v), want %v", st, err, websocket.StatusMessageTooBig)
	}
}

func TestDemoProxyProtocol(t *testing.T) {
	d := startDemo(t, "-proxy")

	src := &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 5555}
	dst := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8443}

	conn, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := proxyproto.HeaderProxyFromAddrs(2, src, dst).WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	if !strings.Contains(string(body), "203.0.113.7:5555") {
		t.Errorf("page does not show the PROXY source address 203.0.113.7:5555:\n%s", body)
	}
	if strings.Contains(string(body), conn.LocalAddr().String()) {
		t.Errorf("page shows the TCP peer %s instead of the PROXY source", conn.LocalAddr())
	}

	// -proxy requires the header: a plain request gets no response.
	plain, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	io.WriteString(plain, "GET / HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nConnection: close\r\n\r\n")
	plain.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(plain), nil); err == nil {
		resp.Body.Close()
		t.Errorf("request without PROXY header got %s, want connection closed", resp.Status)
	}
}

func TestDemoShutdown(t *testing.T) {
	d := startDemo(t)
	ctx := t.Context()

	// An open WebSocket must not keep serve from returning, and is closed
	// with 1001 going away.
	c, _, err := websocket.Dial(ctx, "ws://"+d.addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}

	// The client must keep reading for the close handshake to complete.
	readErr := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		readErr <- err
	}()

	if err := d.stop(); err != nil {
		t.Fatalf("serve returned %v, want nil", err)
	}
	if st := websocket.CloseStatus(<-readErr); st != websocket.StatusGoingAway {
		t.Errorf("websocket close status = %v, want %v", st, websocket.StatusGoingAway)
	}
	if _, err := net.Dial("tcp", d.addr); err == nil {
		t.Errorf("listener still accepting after shutdown")
	}
}

// lineWriter sends each Write on a channel, to wait for the startup line.
type demoLineWriter chan string

func (w demoLineWriter) Write(p []byte) (int, error) {
	w <- string(p)
	return len(p), nil
}

func TestDemoRunDemoBackend(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout := make(demoLineWriter, 1)
	done := make(chan error, 1)
	go func() {
		done <- runDemoBackend(ctx, []string{"-listen", "127.0.0.1:0"}, stdout, slog.New(slog.DiscardHandler))
	}()

	var line string
	select {
	case line = <-stdout:
	case err := <-done:
		t.Fatalf("runDemoBackend returned early: %v", err)
	}
	const prefix = "demo backend listening on http://"
	if !strings.HasPrefix(line, prefix) {
		t.Fatalf("startup line = %q", line)
	}
	addr, _, _ := strings.Cut(strings.TrimPrefix(line, prefix), " ")
	if want := prefix + addr + " (ws://" + addr + "/echo)\n"; line != want {
		t.Errorf("startup line = %q, want %q", line, want)
	}

	resp, body := demoGet(t, "http://"+addr+"/healthz")
	if resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", resp.StatusCode, body)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("runDemoBackend returned %v, want nil", err)
	}
}

func TestDemoFlags(t *testing.T) {
	b, err := newDemoBackend(nil, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.listen != "127.0.0.1:8081" || b.proxy {
		t.Errorf("defaults: listen=%q proxy=%v, want 127.0.0.1:8081 false", b.listen, b.proxy)
	}
	b, err = newDemoBackend([]string{"-listen", "[::1]:9000", "-proxy"}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.listen != "[::1]:9000" || !b.proxy {
		t.Errorf("listen=%q proxy=%v", b.listen, b.proxy)
	}

	var out bytes.Buffer
	if err := runDemoBackend(t.Context(), []string{"-bogus"}, &out, nil); err == nil {
		t.Error("-bogus: want error")
	}
	if !strings.Contains(out.String(), "-listen") {
		t.Errorf("usage not written to stdout: %q", out.String())
	}
	if err := runDemoBackend(t.Context(), []string{"-h"}, io.Discard, nil); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v, want flag.ErrHelp", err)
	}
	if err := runDemoBackend(t.Context(), []string{"extra"}, io.Discard, nil); err == nil {
		t.Error("positional argument: want error")
	}
}
