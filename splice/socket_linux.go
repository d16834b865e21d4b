package splice

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readNonblock reads what the socket has queued without waiting: it
// returns errWouldBlock when nothing is, io.EOF at end of stream. An expired
// read deadline or a closed conn is reported as net would (timeout, closed).
func readNonblock(rc syscall.RawConn, p []byte) (int, error) {
	var s sockReader
	return s.read(rc, p)
}

// sockReader is readNonblock and waitReadable for one goroutine's calls,
// with their RawConn callbacks bound once: a closure per call, and the
// variables it captures, were three quarters of the garbage a relayed
// small message made (S1, S5).
type sockReader struct {
	p              []byte // the read's buffer, during the call only
	n              int
	err            error
	waited         bool
	block          bool // readWait: wait on Go's netpoller for bytes
	readFn, waitFn func(uintptr) bool
}

// read is readNonblock.
func (s *sockReader) read(rc syscall.RawConn, p []byte) (int, error) {
	return s.readMode(rc, p, false)
}

// readWait reads as a socket's Read does: it waits on Go's netpoller until
// bytes, the end of the stream or an error come, or the read deadline
// passes.
func (s *sockReader) readWait(rc syscall.RawConn, p []byte) (int, error) {
	return s.readMode(rc, p, true)
}

// readPaced is readWait, giving pc back its turn while it waits.
func (s *sockReader) readPaced(rc syscall.RawConn, p []byte, pc Pacer) (int, error) {
	for {
		n, err := s.readMode(rc, p, false)
		if err != errWouldBlock {
			return n, err
		}
		pc.Release()
		if err = s.wait(rc); err != nil {
			// Deadline or close: no turn to compute an error with.
			return 0, err
		}
		pc.Acquire()
	}
}

func (s *sockReader) readMode(rc syscall.RawConn, p []byte, block bool) (int, error) {
	if s.readFn == nil {
		s.readFn = s.readOnce
	}
	s.p, s.block = p, block
	rerr := rc.Read(s.readFn)
	s.p = nil // not kept: a pooled buffer goes back
	if rerr != nil {
		return 0, rerr
	}
	return readOutcome("read", s.n, s.err, len(p))
}

func (s *sockReader) readOnce(fd uintptr) bool {
	s.n, s.err = rawIO(unix.SYS_READ, int(fd), s.p)
	return s.err != unix.EAGAIN || !s.block
}

// readOutcome reports what a non-blocking call that read want bytes from
// a socket returned, as a read does: errWouldBlock for EAGAIN, io.EOF
// when it moved nothing, its error as an *os.SyscallError named op.
// (The calls themselves stay inline in their RawConn callbacks: a shared
// callback would cost another allocation on every read.)
func readOutcome(op string, n int, err error, want int) (int, error) {
	switch {
	case err == unix.EAGAIN:
		return 0, errWouldBlock
	case err != nil:
		return 0, os.NewSyscallError(op, err)
	case n == 0 && want > 0:
		return 0, io.EOF
	}
	return n, nil
}

// waitReadable parks the goroutine on Go's netpoller until the socket
// reports readable, the read deadline passes or the conn is closed. The
// caller has just seen EAGAIN, or a short read (see shortRead); whether
// bytes really are queued is for its next read to find out, not assumed
// from the wake-up.
//
// RawConn.Read begins by forgetting the readiness the netpoller has
// recorded for the socket. Bytes that arrived since the caller's last read
// may have had their (edge-triggered) event taken already, so the socket is
// asked directly before sleeping: otherwise they would wait for the peer's
// next bytes, which may never come.
func waitReadable(rc syscall.RawConn) error {
	var s sockReader
	return s.wait(rc)
}

// wait is waitReadable.
func (s *sockReader) wait(rc syscall.RawConn) error {
	if s.waitFn == nil {
		s.waitFn = s.waitOnce
	}
	s.waited = false
	return rc.Read(s.waitFn)
}

func (s *sockReader) waitOnce(fd uintptr) bool {
	if s.waited {
		return true
	}
	s.waited = true
	return readable(int(fd))
}

// readable reports whether a read on fd would not block: bytes, EOF or an
// error are pending. It does not wait.
func readable(fd int) bool { return ready(fd, unix.POLLIN|unix.POLLRDHUP) }

// ready reports whether fd has one of events, or an error, pending. It does
// not wait.
func ready(fd int, events int16) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		// On a poll error, let the caller's read find out what is wrong.
		return err != nil || n > 0
	}
}

// spliceIn moves what the socket has queued, up to the pipe's capacity,
// into the empty pipe pp. It returns errWouldBlock when nothing is queued
// and io.EOF at end of stream.
func spliceIn(rc syscall.RawConn, pp *pipe) (int, error) {
	var n int
	var err error
	if rerr := rc.Read(func(fd uintptr) bool {
		for {
			var n64 int64
			n64, err = unix.Splice(int(fd), nil, pp.w, nil, pp.size, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			n = int(n64)
			if err != unix.EINTR {
				return true
			}
		}
	}); rerr != nil {
		return 0, rerr
	}
	if n, err = readOutcome("splice", n, err, pp.size); err != nil {
		return 0, err
	}
	pp.data += n
	return n, nil
}

// spliceOut moves everything pp holds into the socket, waiting on the
// netpoller while the socket's send buffer is full (within the write
// deadline). It returns how many bytes it moved.
func spliceOut(rc syscall.RawConn, pp *pipe) (int, error) {
	moved := 0
	var err error
	for pp.data > 0 {
		if werr := rc.Write(func(fd uintptr) bool {
			for {
				var n int64
				n, err = unix.Splice(pp.r, nil, int(fd), nil, pp.data, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				switch err {
				case unix.EINTR:
					continue
				case unix.EAGAIN:
					return false // the socket is full: wait until writable
				case nil:
					pp.data -= int(n)
					moved += int(n)
				}
				return true
			}
		}); werr != nil {
			return moved, werr
		}
		if err != nil {
			return moved, os.NewSyscallError("splice", err)
		}
	}
	return moved, nil
}

// isSpliceUnsupported reports whether err means splice(2) cannot move this
// kind of socket, so the direction should copy instead.
func isSpliceUnsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)
}

// rawSocket returns the RawConn of a TCP or unix stream socket, nil for
// anything else (wrappers included: their buffered bytes would be missed).
func rawSocket(c net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch v := c.(type) {
	case *net.TCPConn:
		sc = v
	case *net.UnixConn:
		sc = v
	case KernelRecords:
		sc = v
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// resetSeen reports whether a TCP socket whose read has just found the end
// of its stream was in fact reset. A socket reports a RST's error once, to
// whichever call comes first (a write in the other direction, say); reads
// after it find an end of stream, as for a FIN. The state tells them
// apart: a FIN leaves the socket in CLOSE_WAIT, a RST in CLOSE. Its
// answer counts only if sluice had not sent its own FIN on the socket when
// it was asked, after which CLOSE is also where a clean end leads.
func resetSeen(rc syscall.RawConn) bool {
	var state uint8
	control(rc, func(fd int) error {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			state = info.State
		}
		return err
	})
	return state == unix.BPF_TCP_CLOSE
}

// finReceived reports whether the peer of a TCP socket has ended its
// stream (or the connection is gone): its state is no longer one where
// the peer may still send.
func finReceived(rc syscall.RawConn) bool {
	state := uint8(unix.BPF_TCP_CLOSE) // if it cannot be asked: ended, as read says
	control(rc, func(fd int) error {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			state = info.State
		}
		return err
	})
	switch state {
	case unix.BPF_TCP_ESTABLISHED, unix.BPF_TCP_FIN_WAIT1, unix.BPF_TCP_FIN_WAIT2:
		return false
	}
	return true
}

// setRcvLowat sets the socket's SO_RCVLOWAT: how many bytes must be queued
// before it reports readable.
func setRcvLowat(rc syscall.RawConn, n int) error {
	return control(rc, func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, n)
	})
}

// control runs f on rc's descriptor, which cannot be closed and reused
// meanwhile, and returns the error of either.
func control(rc syscall.RawConn, f func(fd int) error) error {
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// enableInq turns TCP_INQ on for a TCP socket: each recvmsg then says how
// many bytes are left queued after it, and counts a pending FIN as one
// (see inqReader). It reports false for sockets that cannot (not TCP).
func enableInq(rc syscall.RawConn) bool {
	return control(rc, func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_INQ, 1)
	}) == nil
}

// inqReader reads a socket with TCP_INQ on, from inside a RawConn.Read
// callback (fd is the callback's). With trust, after a read that left
// nothing queued, neither bytes nor a FIN, the next read reports
// errWouldBlock without a system call: unlike shortRead's guess this is
// the kernel's word, so a direction may sleep on it without asking the
// socket again. Only nearly: TCP_INQ does not count a pending error, so a
// reset that came with the peer's last bytes goes unseen until something
// else wakes the direction. Only a direction that parks trusts it: once
// quiet for ParkAfter it parks, and the Parker's level-triggered epoll
// reports the error at once.
type inqReader struct{ empty, trust bool }

func (q *inqReader) read(fd int, p []byte) (int, error) {
	if q.empty {
		q.empty = false
		return 0, errWouldBlock
	}
	n, inq, err := recvInq(fd, p)
	n, err = readOutcome("recvmsg", n, err, len(p))
	q.empty = q.trust && err == nil && inq == 0
	return n, err
}

// recvInq is one recvmsg(2) of fd into p; inq is what the kernel says is
// left queued (a pending FIN counts as 1), -1 if it did not say. Its
// buffers stay on the stack: no garbage per read. The call is raw, as
// rawIO's.
func recvInq(fd int, p []byte) (n, inq int, err error) {
	var oob [24]byte // unix.CmsgSpace(4)
	var iov unix.Iovec
	if len(p) > 0 {
		iov.Base = &p[0]
	}
	iov.SetLen(len(p))
	msg := unix.Msghdr{Iov: &iov, Control: &oob[0]}
	msg.SetIovlen(1)
	msg.SetControllen(len(oob))
	for {
		r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return 0, -1, e
		}
		inq = -1
		if int(msg.Controllen) >= unix.CmsgLen(4) {
			h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			if h.Level == unix.SOL_TCP && h.Type == unix.TCP_CM_INQ {
				inq = int(*(*int32)(unsafe.Pointer(&oob[unix.CmsgLen(0)])))
			}
		}
		return int(r), inq, nil
	}
}

// rawIO is one read(2) or write(2) (trap) of p on fd, a non-blocking
// socket, made without telling Go's scheduler (RawSyscall). A call the
// scheduler is told of lets sysmon, which checks every 20 µs while the
// process is busy, hand the P to another thread when it finds the same
// call in progress twice; when every thread shares one CPU, as make bench
// has them, the call is often caught that way only because sysmon itself
// preempted it, and each handover costs two context switches. A
// non-blocking socket call never waits, so the P has nothing to hand over
// for.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	for {
		r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return 0, e
		}
		return int(r), nil
	}
}

// sockWriter writes to a socket with rawIO, with its RawConn callback
// bound once (see sockReader).
type sockWriter struct {
	p    []byte // the write's bytes, during the call only
	n    int
	err  error
	wait bool // wait while the send buffer is full, else take what fits
	fn   func(uintptr) bool
}

// write writes p: all of it, waiting on Go's netpoller while the send
// buffer is full (within the write deadline), or with wait false what the
// socket takes at once, perhaps nothing. An expired write deadline or a
// closed conn is reported as net would.
func (w *sockWriter) write(rc syscall.RawConn, p []byte, wait bool) (int, error) {
	if w.fn == nil {
		w.fn = w.once
	}
	w.p, w.n, w.err, w.wait = p, 0, nil, wait
	werr := rc.Write(w.fn)
	n, err := w.n, w.err
	w.p = nil
	switch {
	case werr != nil:
		return n, werr
	case err != nil:
		return n, os.NewSyscallError("write", err)
	}
	return n, nil
}

// writePaced is write(rc, p, true), giving pc back its turn while the send
// buffer is full.
func (w *sockWriter) writePaced(rc syscall.RawConn, p []byte, pc Pacer) (int, error) {
	done := 0
	for {
		n, err := w.write(rc, p[done:], false)
		done += n
		if err != nil || done == len(p) {
			return done, err
		}
		pc.Release()
		if err = waitWritable(rc); err != nil {
			return done, err
		}
		pc.Acquire()
	}
}

// waitWritable parks the goroutine on Go's netpoller until the socket
// reports room in its send buffer, the write deadline passes or the conn is
// closed. As in waitReadable, the socket is asked first: RawConn.Write
// forgets the readiness recorded before it.
func waitWritable(rc syscall.RawConn) error {
	asked := false
	return rc.Write(func(fd uintptr) bool {
		if asked {
			return true
		}
		asked = true
		return ready(int(fd), unix.POLLOUT)
	})
}

func (w *sockWriter) once(fd uintptr) bool {
	for w.n < len(w.p) {
		n, err := rawIO(unix.SYS_WRITE, int(fd), w.p[w.n:])
		switch {
		case err == unix.EAGAIN:
			return !w.wait
		case err != nil:
			w.err = err
			return true
		}
		w.n += n
	}
	return true
}
