package splice

import "syscall"

// shortRead saves the read that would find a socket empty. A TCP read that
// returns fewer bytes than asked for has taken everything the socket had
// queued, so the read after it would almost surely fail with EAGAIN: a
// system call per message for nothing, a quarter of those a small
// request-response exchange costs. shortRead answers that read with
// errWouldBlock itself, once. It is only a guess, and a safe one: a
// direction told "would block" waits with waitReadable, which tests the
// socket before it sleeps, or parks in the Parker's level-triggered epoll.
//
// A batching direction does not guess (off): there the read after a short
// one takes what arrived while the last bytes were written, where waiting
// would sleep until the batch is full. Spliced directions do not guess
// either (until they fall back to copying): they batch whenever they
// stream, and what a splice moves is also bounded by the pipe's slots.
type shortRead struct {
	empty, off bool
	sock       sockReader
}

// read is readNonblock, except right after a short read.
func (s *shortRead) read(rc syscall.RawConn, p []byte) (int, error) {
	if s.empty {
		s.empty = false
		return 0, errWouldBlock
	}
	n, err := s.sock.read(rc, p)
	s.empty = !s.off && err == nil && n < len(p)
	return n, err
}
