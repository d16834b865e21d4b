package handover

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Moving established connections, after the listeners: the old process
// sends each connection's sockets (SCM_RIGHTS) with a description of it
// over a unix socket pair, in one message per connection. The exchange has
// two steps so that a connection is never relayed by both processes: the
// new process answers "ok" (it has the sockets and can run them) or why
// not, and starts the relay only when told "go", which the old process
// sends after it let go of its copies. An old process that hears nothing
// in time keeps the connection and closes the pair, and a new process that
// sees the pair close before "go" closes the sockets it holds, which ends
// nothing: the old process still has them.

const envConns = "SLUICE_CONNS_FD" // the new process's end of the pair

// AnswerTimeout bounds the wait for the new process's answer.
const AnswerTimeout = 10 * time.Second

// ErrPeerGone is wrapped when the other process stopped answering.
var ErrPeerGone = errors.New("handover: the other process is gone")

// ConnPair makes the socket pair: keep parent, pass child to Start.
func ConnPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("handover: socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "conns-parent"), os.NewFile(uintptr(fds[1]), "conns-child"), nil
}

// Sender moves connections over the parent's end of the pair.
type Sender struct {
	uc *net.UnixConn
}

// hello is what a new process says first on the pair: that it takes
// connections. A new process that does not (an older sluice) says
// nothing, and no socket is sent its way, where it would sit unread and
// keep its connection open for the life of that process.
const hello = "hello"

// NewSender takes over f, the parent's end, and waits for the new
// process's hello.
func NewSender(f *os.File) (*Sender, error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	uc := c.(*net.UnixConn)
	uc.SetReadDeadline(time.Now().Add(AnswerTimeout))
	buf := make([]byte, len(hello)+1)
	n, err := uc.Read(buf)
	if err != nil || string(buf[:n]) != hello {
		uc.Close()
		return nil, fmt.Errorf("%w: no hello from the new process (%q, %v): it does not take connections", ErrPeerGone, buf[:n], err)
	}
	return &Sender{uc: uc}, nil
}

// Send sends state and the sockets of one connection and waits for the
// answer. On nil the new process has them and waits for Go; any other
// error leaves the connection with the caller (one wrapping ErrPeerGone:
// and stop sending).
func (s *Sender) Send(state []byte, conns ...syscall.Conn) error {
	var werr error
	if err := withFDs(conns, func(fds []int) {
		s.uc.SetWriteDeadline(time.Now().Add(AnswerTimeout))
		_, _, werr = s.uc.WriteMsgUnix(state, unix.UnixRights(fds...), nil)
	}); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("%w: send: %w", ErrPeerGone, werr)
	}
	s.uc.SetReadDeadline(time.Now().Add(AnswerTimeout))
	buf := make([]byte, 512)
	n, err := s.uc.Read(buf)
	switch {
	case err != nil:
		return fmt.Errorf("%w: answer: %w", ErrPeerGone, err)
	case n == 2 && string(buf[:n]) == "ok":
		return nil
	}
	return fmt.Errorf("handover: the new process refused the connection: %s", buf[:n])
}

// Go tells the new process to start the connection it said ok to.
func (s *Sender) Go() error {
	s.uc.SetWriteDeadline(time.Now().Add(AnswerTimeout))
	if _, err := s.uc.Write([]byte("go")); err != nil {
		return fmt.Errorf("%w: go: %w", ErrPeerGone, err)
	}
	return nil
}

// Close closes the parent's end: the new process stops receiving.
func (s *Sender) Close() error { return s.uc.Close() }

// withFDs runs f with the descriptors of conns, each held open meanwhile.
func withFDs(conns []syscall.Conn, f func(fds []int)) error {
	fds := make([]int, 0, len(conns))
	var run func(i int) error
	run = func(i int) error {
		if i == len(conns) {
			f(fds)
			return nil
		}
		rc, err := conns[i].SyscallConn()
		if err != nil {
			return fmt.Errorf("handover: %w", err)
		}
		var inner error
		if err := rc.Control(func(fd uintptr) {
			fds = append(fds, int(fd))
			inner = run(i + 1)
		}); err != nil {
			return fmt.Errorf("handover: %w", err)
		}
		return inner
	}
	return run(0)
}

// Adopter takes one moved connection: it checks state and the sockets
// and returns the function that starts it, or why it cannot; the sockets
// are its own either way once it returns a start function.
type Adopter func(state []byte, conns []net.Conn) (start func(), err error)

// ConnsInherited returns the child's end of the pair if this process was
// handed one (nil otherwise), and clears it from the environment.
func ConnsInherited() *os.File {
	v, ok := os.LookupEnv(envConns)
	os.Unsetenv(envConns)
	if !ok {
		return nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "conns-child")
}

// Receive takes the connections the old process sends over f until it
// closes its end, starting each with adopt's function once told to.
// It returns how many it started.
func Receive(f *os.File, adopt Adopter) (int, error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("handover: %w", err)
	}
	uc := c.(*net.UnixConn)
	defer uc.Close()
	if _, err := uc.Write([]byte(hello)); err != nil {
		return 0, nil // the old process is gone
	}
	buf := make([]byte, 1<<16)
	oob := make([]byte, unix.CmsgSpace(8*4))
	started := 0
	for {
		n, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			return started, nil // the old process is done
		}
		conns, cerr := receivedConns(oob[:oobn])
		if cerr == nil && flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			cerr = errors.New("message truncated")
		}
		var start func()
		if cerr == nil {
			start, cerr = adopt(buf[:n], conns)
		}
		if cerr != nil {
			closeAll(conns)
			if _, err := uc.Write([]byte("no: " + cerr.Error())); err != nil {
				return started, nil
			}
			continue
		}
		if _, err := uc.Write([]byte("ok")); err != nil {
			closeAll(conns)
			return started, nil
		}
		n, err = uc.Read(buf)
		if err != nil || string(buf[:n]) != "go" {
			// The old process kept the connection.
			closeAll(conns)
			return started, nil
		}
		start()
		started++
	}
}

// receivedConns turns the descriptors of an SCM_RIGHTS message into
// connections.
func receivedConns(oob []byte) ([]net.Conn, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("cmsg: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		rights, err := unix.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, rights...)
		}
	}
	conns := make([]net.Conn, 0, len(fds))
	var errs []error
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "moved")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		conns = append(conns, c)
	}
	if err := errors.Join(errs...); err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}
