package splice

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// frozenWorld is a relay started with Start, for the Freeze tests: the
// test's client and backend ends, and the relay's result.
type frozenWorld struct {
	client, backend *net.TCPConn // the test's ends
	relayClient     *net.TCPConn // the relay's ends
	relayBackend    *net.TCPConn
	h               *Handle
	done            chan relayResult
}

func startFrozenWorld(t *testing.T, opts Options, park bool) *frozenWorld {
	t.Helper()
	w := &frozenWorld{done: make(chan relayResult, 1)}
	w.client, w.relayClient = tcpPair(t)
	w.relayBackend, w.backend = tcpPair(t)
	if park {
		p, err := NewParker()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		opts.Parker, opts.ParkAfter = p, time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w.h = Start(ctx, w.relayClient, w.relayBackend, opts, func(st Stats, err error) { w.done <- relayResult{st, err} })
	for _, c := range []*net.TCPConn{w.client, w.backend} {
		c.SetDeadline(time.Now().Add(testTimeout))
	}
	mustWrite(t, w.client, []byte("ping"))
	if got := readFull(t, w.backend, 4); string(got) != "ping" {
		t.Fatalf("backend read %q", got)
	}
	mustWrite(t, w.backend, []byte("pong"))
	if got := readFull(t, w.client, 4); string(got) != "pong" {
		t.Fatalf("client read %q", got)
	}
	return w
}

// TestFreezeThaw: a frozen relay moves nothing; thawed, it delivers what
// waited meanwhile, even when it stayed frozen past its idle timeout, and
// ends as usual. Without an idle timeout or a Parker, Freeze still stops
// it (a direction woken by Freeze's deadline must not spin).
func TestFreezeThaw(t *testing.T) {
	for _, tc := range []struct {
		name string
		idle time.Duration
		park bool
	}{
		{"idle_timeout/parker", 100 * time.Millisecond, true},
		{"idle_timeout/no_parker", 100 * time.Millisecond, false},
		{"no_timeout/no_parker", -1, false},
		{"no_timeout/parker", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startFrozenWorld(t, Options{IdleTimeout: tc.idle, HalfCloseTimeout: -1}, tc.park)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			fr, err := w.h.Freeze(ctx)
			if err != nil {
				t.Fatalf("Freeze: %v", err)
			}
			if fr.In != 4 || fr.Out != 4 {
				t.Fatalf("frozen with %d/%d bytes moved, want 4/4", fr.In, fr.Out)
			}
			mustWrite(t, w.client, []byte("while frozen"))
			// Frozen past the idle timeout: that is the subject, not a
			// synchronisation.
			time.Sleep(3 * max(tc.idle, 50*time.Millisecond))
			w.backend.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if n, err := w.backend.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
				t.Fatalf("a frozen relay delivered %d bytes (%v)", n, err)
			}
			w.backend.SetReadDeadline(time.Now().Add(testTimeout))
			w.h.Thaw()
			if got := readFull(t, w.backend, len("while frozen")); string(got) != "while frozen" {
				t.Fatalf("backend read %q after Thaw", got)
			}
			w.client.CloseWrite()
			expectEOF(t, w.backend)
			w.backend.CloseWrite()
			expectEOF(t, w.client)
			select {
			case r := <-w.done:
				if r.st.Reason != ClientClosed {
					t.Fatalf("relay ended %s (%v), want %s", r.st.Reason, r.err, ClientClosed)
				}
			case <-time.After(testTimeout):
				t.Fatal("relay did not end")
			}
		})
	}
}

// TestFreezeRelease: a relay released after Freeze reports HandedOver and
// closes only its own descriptors: the connections go on through copies
// of the sockets, as in the process they moved to.
func TestFreezeRelease(t *testing.T) {
	w := startFrozenWorld(t, Options{}, true)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	fr, err := w.h.Freeze(ctx)
	if err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	cf, err := fr.Client.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	bf, err := fr.Backend.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	w.h.Release()
	select {
	case r := <-w.done:
		if r.st.Reason != HandedOver || r.st.BytesIn != 4 || r.st.BytesOut != 4 {
			t.Fatalf("released relay reported %+v", r.st)
		}
	case <-time.After(testTimeout):
		t.Fatal("Release did not report")
	}
	moved := func(f interface{ Close() error }, c net.Conn, err error) net.Conn {
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	cc, err := net.FileConn(cf)
	nc := moved(cf, cc, err)
	bc, err := net.FileConn(bf)
	nb := moved(bf, bc, err)
	// The next relay: copy a message each way by hand.
	mustWrite(t, w.client, []byte("still here"))
	if got := readFull(t, nc, 10); string(got) != "still here" {
		t.Fatalf("moved client socket read %q", got)
	}
	mustWrite(t, nb, []byte("and here"))
	if got := readFull(t, w.backend, 8); string(got) != "and here" {
		t.Fatalf("backend read %q through the moved socket", got)
	}
	nc.Close()
	nb.Close()
	for _, c := range []net.Conn{w.client, w.backend} {
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("after the moved sockets closed: %v", err) // a FIN, not a reset
		}
	}
}

// TestFreezeHalfClosed: a relay whose client has ended its stream (and
// whose backend got the FIN) moves too; the next relay, started with
// ClientEnded, runs the backend's direction on and ends as one that never
// moved would.
func TestFreezeHalfClosed(t *testing.T) {
	w := startFrozenWorld(t, Options{}, true)
	w.client.CloseWrite()
	expectEOF(t, w.backend)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	fr, err := w.h.Freeze(ctx)
	if err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if fr.ClientEnded != EndClosed || fr.BackendEnded != "" {
		t.Fatalf("frozen with client %q, backend %q ended; want the client closed", fr.ClientEnded, fr.BackendEnded)
	}
	var files []net.Conn
	for _, c := range []net.Conn{fr.Client, fr.Backend} {
		f, err := c.(*net.TCPConn).File()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, nc)
	}
	w.h.Release()
	<-w.done

	done := make(chan relayResult, 1)
	p, err := NewParker()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	Start(context.Background(), files[0], files[1], Options{Parker: p, ClientEnded: fr.ClientEnded, Counters: countersAt(fr.In, fr.Out)},
		func(st Stats, err error) { done <- relayResult{st, err} })
	mustWrite(t, w.backend, []byte("late answer"))
	w.backend.CloseWrite()
	if got := readAll(t, w.client); string(got) != "late answer" {
		t.Fatalf("client read %q", got)
	}
	select {
	case r := <-done:
		want := Stats{BytesIn: 4, BytesOut: 4 + 11, Reason: ClientClosed, ClientEnd: EndClosed, BackendEnd: EndClosed}
		if !sameStats(r.st, want) {
			t.Fatalf("the next relay ended %+v (%v), want %+v", r.st, r.err, want)
		}
	case <-time.After(testTimeout):
		t.Fatal("the next relay did not end")
	}
}

func countersAt(in, out int64) *Counters {
	c := new(Counters)
	c.In.Store(in)
	c.Out.Store(out)
	return c
}
