package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"sluice/l4"
)

// checkLeaks fails t if goroutines started during the test outlive its
// cleanups. Call it first, so that its cleanup runs last.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// gatedWriter is a log output that can stall: each Write waits until gate
// is closed (if it is set). entered gets a token when a Write starts.
type gatedWriter struct {
	gate    chan struct{}
	entered chan struct{} // capacity 1

	mu sync.Mutex
	b  bytes.Buffer
}

func newGatedWriter(stalled bool) *gatedWriter {
	g := &gatedWriter{entered: make(chan struct{}, 1)}
	if stalled {
		g.gate = make(chan struct{})
	}
	return g
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	if g.gate != nil {
		<-g.gate
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.b.Write(p)
}

func (g *gatedWriter) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.b.String()
}

// waitEntered waits until the queue's writer is inside a Write.
func (g *gatedWriter) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the queue's writer never wrote")
	}
}

// testQueue is a queue on out whose drop report reads "dropped=N".
func testQueue(t *testing.T, out io.Writer, maxLines, maxBytes int) *logQueue {
	q := newLogQueue(out, maxLines, maxBytes, func(n int64) { fmt.Fprintf(out, "dropped=%d\n", n) })
	t.Cleanup(func() { q.Close(10 * time.Second) })
	return q
}

func TestLogQueueKeepsOrder(t *testing.T) {
	checkLeaks(t)
	out := newGatedWriter(false)
	q := testQueue(t, out, 1000, 1<<20)
	var want strings.Builder
	for i := range 1000 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		io.WriteString(q, line)
	}
	if err := q.Close(10 * time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := out.String(); got != want.String() {
		t.Errorf("output differs from the lines written:\n%s", got)
	}
	if n := q.Dropped(); n != 0 {
		t.Errorf("Dropped = %d, want 0", n)
	}
	io.WriteString(q, "after close\n")
	if n := q.Dropped(); n != 1 {
		t.Errorf("Dropped = %d after a line logged after Close, want 1", n)
	}
}

// TestLogQueueDrops: with the output stalled, Write still returns at once;
// lines beyond the bound in lines or in bytes are dropped and counted, and
// once the output moves the count is written before the next line.
func TestLogQueueDrops(t *testing.T) {
	for _, tc := range []struct {
		name               string
		maxLines, maxBytes int
		write              []string // after the first line, which stalls in the output
		want               string   // the output after the first line
		dropped            int64
	}{
		{
			name:     "lines",
			maxLines: 3, maxBytes: 1 << 20,
			write:   []string{"b\n", "c\n", "d\n", "e\n", "f\n"},
			want:    "dropped=2\nb\nc\nd\n",
			dropped: 2,
		},
		{
			// The line being written counts: 5 + 5 bytes fill 10.
			name:     "bytes",
			maxLines: 100, maxBytes: 10,
			write:   []string{"bbbb\n", "c\n", "dd\n"},
			want:    "dropped=2\nbbbb\n",
			dropped: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			out := newGatedWriter(true)
			q := testQueue(t, out, tc.maxLines, tc.maxBytes)
			io.WriteString(q, "aaaa\n")
			out.waitEntered(t)
			for _, l := range tc.write {
				done := make(chan struct{})
				go func() {
					defer close(done)
					io.WriteString(q, l)
				}()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("Write blocked on a stalled output")
				}
			}
			if n := q.Dropped(); n != tc.dropped {
				t.Errorf("Dropped = %d, want %d", n, tc.dropped)
			}
			close(out.gate)
			if err := q.Close(10 * time.Second); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got, want := out.String(), "aaaa\n"+tc.want; got != want {
				t.Errorf("output %q, want %q", got, want)
			}
		})
	}
}

// TestLogQueueCloseStalled: Close gives up on an output that never moves,
// and returns by its deadline; the writer ends when its Write returns.
func TestLogQueueCloseStalled(t *testing.T) {
	checkLeaks(t)
	out := newGatedWriter(true)
	q := testQueue(t, out, 16, 1<<20)
	t.Cleanup(func() { close(out.gate) }) // before q's Close
	io.WriteString(q, "stuck\n")
	out.waitEntered(t)
	io.WriteString(q, "queued 1\n")
	io.WriteString(q, "queued 2\n")

	closed := make(chan error, 1)
	go func() { closed <- q.Close(50 * time.Millisecond) }()
	var err error
	select {
	case err = <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close with a 50ms deadline has not returned after 10s")
	}
	if err == nil || !strings.Contains(err.Error(), "2 lines not written") {
		t.Fatalf("Close = %v, want an error counting 2 lines", err)
	}
	io.WriteString(q, "after close\n")
	if n := q.Dropped(); n != 3 {
		t.Errorf("Dropped = %d, want 3 (two queued, one after Close)", n)
	}
}

// TestNewLoggerReportsDrops: the drop report is a line in the configured
// format, at WARN even when the configured level is higher.
func TestNewLoggerReportsDrops(t *testing.T) {
	for _, tc := range []struct {
		format, want string
	}{
		{"text", `level=WARN msg="log output stalled; lines dropped" dropped=3`},
		{"json", `"level":"WARN","msg":"log output stalled; lines dropped","dropped":3}`},
	} {
		t.Run(tc.format, func(t *testing.T) {
			checkLeaks(t)
			out := newGatedWriter(true)
			l := newLogger(out, l4.LogConfig{Format: tc.format, Level: "error"})
			logger, q := l.logger, l.queue
			logger.Error("first")
			out.waitEntered(t)
			for i := range logQueueLines + 3 {
				logger.Error("queued", "i", i)
			}
			close(out.gate)
			if err := q.Close(10 * time.Second); err != nil {
				t.Fatalf("Close: %v", err)
			}
			lines := strings.Split(out.String(), "\n")
			if len(lines) < 2 || !strings.Contains(lines[1], tc.want) {
				t.Fatalf("second line %q, want it to contain %q", lines[1], tc.want)
			}
			if n := len(lines) - 1; n != 2+logQueueLines {
				t.Errorf("%d lines written, want %d: the first, the report and the queue", n, 2+logQueueLines)
			}
		})
	}
}

// TestLogStallDoesNotWedgeListener: a listener with max_connections = 10
// whose log output blocks forever keeps serving, round after round; the
// access lines it could not write are counted.
func TestLogStallDoesNotWedgeListener(t *testing.T) {
	checkLeaks(t)
	backend := startEcho(t)
	out := newGatedWriter(true)
	q := testQueue(t, out, 8, 1<<20)
	s := &l4.Server{
		Name:     "plain",
		MaxConns: 10,
		Logger:   slog.New(slog.NewTextHandler(q, nil)),
		Routes: []l4.Route{{
			Name:     "default",
			Upstream: &l4.Upstream{Name: "echo", Servers: []*l4.Backend{l4.NewBackend(backend)}},
		}},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-served
	})
	// The output moves again first: should a connection be stuck in a log
	// write, the test fails instead of hanging in Shutdown.
	t.Cleanup(func() { close(out.gate) })

	for round := range 10 {
		conns := make([]net.Conn, 10)
		for i := range conns {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
			if err != nil {
				t.Fatalf("round %d: dial: %v", round, err)
			}
			defer c.Close()
			conns[i] = c
		}
		for i, c := range conns {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte{byte(i)}); err != nil {
				t.Fatalf("round %d, conn %d: write: %v", round, i, err)
			}
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err != nil {
				t.Fatalf("round %d, conn %d: not served: %v", round, i, err)
			}
		}
		for _, c := range conns {
			c.Close()
		}
	}
	if q.Dropped() == 0 {
		t.Error("no line was dropped with the log output stalled")
	}
}
