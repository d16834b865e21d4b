package l4

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sluice/handover"
)

// moveTo moves old's connections to next over a connection pair, as a
// binary upgrade does between two processes, and returns what MoveConns
// and Receive counted. frozen, if not nil, runs when each connection has
// stopped and before it is sent.
func moveTo(t *testing.T, old, next *Proxy, frozen ...func()) (moved, stayed, received int) {
	t.Helper()
	parent, child, err := handover.ConnPair()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1)
	go func() {
		n, err := handover.Receive(child, func(state []byte, cs []net.Conn) (func(), error) {
			if len(cs) != 2 {
				return nil, fmt.Errorf("%d sockets", len(cs))
			}
			return next.AdoptConn(state, cs[0], cs[1])
		})
		if err != nil {
			t.Errorf("Receive: %v", err)
		}
		got <- n
	}()
	sender, err := handover.NewSender(parent)
	if err != nil {
		t.Fatal(err)
	}
	moved, stayed = old.MoveConns(context.Background(), func(state []byte, client, backend syscall.Conn) error {
		for _, f := range frozen {
			f()
		}
		if err := sender.Send(state, client, backend); err != nil {
			if errors.Is(err, handover.ErrPeerGone) {
				return fmt.Errorf("%w: %w", ErrMoveStopped, err)
			}
			return err
		}
		return sender.Go()
	})
	sender.Close()
	return moved, stayed, <-got
}

// hashReader hashes what it reads and says when it has read at least
// mark bytes.
type hashReader struct {
	r      io.Reader
	n      atomic.Int64
	mark   int64
	marked chan struct{}
	once   sync.Once
	sum    [32]byte
}

func (h *hashReader) readAll() error {
	hash := sha256.New()
	buf := make([]byte, 32<<10)
	for {
		n, err := h.r.Read(buf)
		hash.Write(buf[:n])
		if h.n.Add(int64(n)) >= h.mark {
			h.once.Do(func() { close(h.marked) })
		}
		if err == io.EOF {
			copy(h.sum[:], hash.Sum(nil))
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// TestMoveConnsUnderTraffic: a connection moved to another Proxy (another
// process at a binary upgrade) while bytes stream both ways at once goes
// on there without a byte lost, duplicated or reordered (SHA-256 of each
// direction), and both of its ends close cleanly there. Plain and
// passthrough connections move everywhere; terminated ones move where the
// kernel runs their record layer, and stay and finish in the old Proxy
// otherwise.
func TestMoveConnsUnderTraffic(t *testing.T) {
	for _, kind := range []string{"plain", "passthrough", "terminate"} {
		for _, clientDone := range []bool{false, true} {
			name := kind
			if clientDone {
				name += "/client_done"
			}
			t.Run(name, func(t *testing.T) { testMoveUnderTraffic(t, kind, clientDone) })
		}
	}
}

// testMoveUnderTraffic streams both ways through a connection of kind
// and moves it half-way; with clientDone the client has sent its whole
// stream and ended it before the move, so only the backend's direction
// moves on.
func testMoveUnderTraffic(t *testing.T, kind string, clientDone bool) {
	e := connectThrough(t, kind, nil)
	next, _ := e.w.serve(e.cfg)
	const size = 4 << 20
	up, down := stream(7, size), stream(8, size)
	atBackend := &hashReader{r: e.backend, mark: size / 4, marked: make(chan struct{})}
	atClient := &hashReader{r: e.client, mark: size / 4, marked: make(chan struct{})}
	e.client.SetDeadline(time.Now().Add(testTimeout))
	e.backend.SetDeadline(time.Now().Add(testTimeout))
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	// Half of each stream before the move, the rest from the moment the
	// relay has stopped: bytes are in flight both ways while it stops,
	// and more follow while it moves.
	moving := make(chan struct{})
	send := func(c net.Conn, raw *net.TCPConn, b []byte, wait bool) error {
		if _, err := c.Write(b[:size/2]); err != nil {
			return err
		}
		if wait {
			<-moving
		}
		if _, err := c.Write(b[size/2:]); err != nil {
			return err
		}
		if err := closeWriteConn(c); err != nil || c == net.Conn(raw) {
			return err
		}
		return raw.CloseWrite() // after close_notify, a *tls.Conn's FIN
	}
	backendRead := make(chan error, 1)
	wg.Go(func() { errs <- send(e.client, e.clientRaw, up, !clientDone) })
	wg.Go(func() { errs <- send(e.backend, e.backendRaw, down, true) })
	wg.Go(func() { backendRead <- atBackend.readAll() })
	wg.Go(func() { errs <- atClient.readAll() })

	<-atBackend.marked
	<-atClient.marked
	if clientDone {
		// The client's whole stream, and its end, are at the backend.
		if err := <-backendRead; err != nil {
			t.Fatal(err)
		}
		backendRead <- nil
	}
	moved, stayed, received := moveTo(t, e.p, next, func() { close(moving) })
	select {
	case <-moving:
	default:
		close(moving) // nothing moved (userspace TLS): let the streams end here
	}
	wg.Wait()
	errs <- <-backendRead
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if atBackend.sum != sha256.Sum256(up) || atClient.sum != sha256.Sum256(down) {
		t.Fatalf("streams differ: backend read %d bytes, client %d", atBackend.n.Load(), atClient.n.Load())
	}
	wantMoved := kind != "terminate" || kernelTLS()
	t.Logf("moved %d, stayed %d, received %d", moved, stayed, received)
	if wantMoved != (moved == 1 && received == 1) {
		t.Fatalf("moved %d, stayed %d, received %d; want moved: %v", moved, stayed, received, wantMoved)
	}
	total := []string{"client_end=closed", "backend_end=closed"}
	if kind != "passthrough" { // passthrough counts the TLS records
		total = append(total, fmt.Sprintf("bytes_in=%d", size), fmt.Sprintf("bytes_out=%d", size))
	}
	if clientDone {
		total = append(total, "reason=client_closed")
	}
	if wantMoved {
		e.w.waitLog("msg=moved")
	}
	line := e.w.waitLog(append([]string{"msg=access"}, total...)...)
	t.Logf("%s", line)
}

// closeWriteConn half-closes c: close_notify and a FIN for TLS.
func closeWriteConn(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// TestMoveKeepsClientCount: a moved connection counts against its
// client's max_connections_per_ip in the new process as it did in the
// old one, and gives its place back when it ends.
func TestMoveKeepsClientCount(t *testing.T) {
	e := connectThrough(t, "plain", func(l *ListenerConfig) {
		l.MaxConnectionsPerIP = 1
		// The last connection's backend never closes: end it soon after
		// its client does.
		l.HalfCloseTimeout = Duration{200 * time.Millisecond}
	})
	next, addrs := e.w.serve(e.cfg)
	io.WriteString(e.client, "x") // the relay has started once it carries a byte
	readExactly(t, e.backend, "x")
	if moved, _, _ := moveTo(t, e.p, next); moved != 1 {
		t.Fatalf("moved %d", moved)
	}
	// Refused at once: the dial itself may meet the reset.
	if refused, err := net.Dial("tcp", addrs[0]); err == nil {
		defer refused.Close()
		expectClosed(t, refused)
	}
	e.w.waitLog("reason=max_connections_per_ip")
	e.client.Close()
	e.backend.Close()
	e.w.waitLog("msg=access", "route=r", "client_end=closed", "backend_end=closed")
	// Its place is free again: the next connection is relayed, not reset.
	admitted, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer admitted.Close()
	admitted.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := admitted.Read(make([]byte, 1)); !isTimeoutErr(err) {
		t.Fatalf("the next connection: read %d, %v; want it held open", n, err)
	}
	admitted.Close()
	e.w.waitLog("msg=access", "reason=idle_timeout")
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
