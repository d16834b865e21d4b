package handover

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair is a connected loopback pair.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); c.Close() })
	return d.(*net.TCPConn), c.(*net.TCPConn)
}

// TestMoveOneConn: a socket sent with its state is started in the
// receiving process only after "go"; one refused, and one whose "go"
// never came, are closed there without ending the connection, which the
// sender still holds.
func TestMoveOneConn(t *testing.T) {
	parent, child, err := ConnPair()
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan net.Conn, 2)
	received := make(chan int, 1)
	go func() {
		n, _ := Receive(child, func(state []byte, cs []net.Conn) (func(), error) {
			if string(state) == "refuse me" {
				return nil, errors.New("not today")
			}
			return func() { started <- cs[0] }, nil
		})
		received <- n
	}()
	s, err := NewSender(parent)
	if err != nil {
		t.Fatal(err)
	}
	peer, mine := tcpPair(t)

	err = s.Send([]byte("refuse me"), mine)
	if err == nil || errors.Is(err, ErrPeerGone) {
		t.Fatalf("a refused connection: %v", err)
	}
	if err := s.Send([]byte("take me"), mine); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
		t.Fatal("started before go")
	default:
	}
	if err := s.Go(); err != nil {
		t.Fatal(err)
	}
	moved := <-started
	mine.Close() // the sender lets go
	// The connection lives on through the moved socket.
	if _, err := peer.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	moved.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(moved, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("moved socket read %q, %v", buf, err)
	}
	moved.Close()
	s.Close()
	if n := <-received; n != 1 {
		t.Fatalf("Receive started %d connections, want 1", n)
	}
}

// TestNoHello: a new process that does not take connections (it closed,
// or never reads, its end) gets none.
func TestNoHello(t *testing.T) {
	parent, child, err := ConnPair()
	if err != nil {
		t.Fatal(err)
	}
	child.Close()
	if _, err := NewSender(parent); !errors.Is(err, ErrPeerGone) {
		t.Fatalf("NewSender with no one on the other end: %v", err)
	}
}

var _ syscall.Conn = (*net.TCPConn)(nil)
