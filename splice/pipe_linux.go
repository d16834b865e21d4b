package splice

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Defaults of a zero PipePool.
const (
	// DefaultPipeSize is what F_SETPIPE_SZ asks for: 1 MiB, as Go's own
	// splice path, so one splice moves what the socket has queued. A pipe
	// takes memory only for the pages that hold bytes, and a pipe is held
	// only while bytes move.
	DefaultPipeSize = 1 << 20
	// DefaultMaxIdlePipes bounds the pipes kept open for reuse; more are
	// closed when they come back.
	DefaultMaxIdlePipes = 64
)

// PipePool lends pipes to splice(2) relays. A direction takes a pipe when
// its source becomes readable and returns it, empty, before it waits
// again, so an idle connection holds no pipe and no file descriptors
// beyond its two sockets. A pipe that may still hold bytes is closed, never
// reused: its bytes belong to another connection. The zero value is ready
// to use.
type PipePool struct {
	// Size is the pipe capacity requested with F_SETPIPE_SZ; zero means
	// DefaultPipeSize. The kernel may grant less (fs.pipe-max-size, or the
	// per-user pipe limits), which only costs more splice calls.
	Size int
	// MaxIdle bounds the pipes kept for reuse; zero means
	// DefaultMaxIdlePipes, negative keeps none.
	MaxIdle int

	mu   sync.Mutex
	free []*pipe

	inUse, open atomic.Int64
}

var defaultPipes PipePool

// pipe is one pipe's two ends and how many bytes it holds.
type pipe struct {
	r, w int
	data int // bytes written in and not yet drained out
	size int // capacity granted
}

func (p *PipePool) size() int {
	if p.Size <= 0 {
		return DefaultPipeSize
	}
	return p.Size
}

func (p *PipePool) maxIdle() int {
	switch {
	case p.MaxIdle == 0:
		return DefaultMaxIdlePipes
	case p.MaxIdle < 0:
		return 0
	}
	return p.MaxIdle
}

// get returns an empty pipe, reused or new.
func (p *PipePool) get() (*pipe, error) {
	p.mu.Lock()
	pp, ok := popLast(&p.free)
	p.mu.Unlock()
	if ok {
		p.inUse.Add(1)
		return pp, nil
	}

	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	pp = &pipe{r: fds[0], w: fds[1], size: 64 << 10}
	// Best effort: a smaller pipe still works, in more calls.
	if n, err := unix.FcntlInt(uintptr(pp.w), unix.F_SETPIPE_SZ, p.size()); err == nil {
		pp.size = n
	} else if n, err := unix.FcntlInt(uintptr(pp.w), unix.F_GETPIPE_SZ, 0); err == nil {
		pp.size = n
	}
	p.open.Add(1)
	p.inUse.Add(1)
	return pp, nil
}

// put takes a pipe back: kept for reuse if it is empty and the pool has
// room, closed otherwise.
func (p *PipePool) put(pp *pipe) {
	p.inUse.Add(-1)
	if pp.data == 0 {
		p.mu.Lock()
		if len(p.free) < p.maxIdle() {
			p.free = append(p.free, pp)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	p.close(pp)
}

// close closes both ends of a pipe that leaves the pool for good.
func (p *PipePool) close(pp *pipe) {
	unix.Close(pp.r)
	unix.Close(pp.w)
	p.open.Add(-1)
}

// PipeStats counts a PipePool's pipes.
type PipeStats struct {
	InUse int64 // lent to relays now
	Open  int64 // open pipes, lent or idle; each holds two fds
}

// Stats reports how many pipes are lent out and open.
func (p *PipePool) Stats() PipeStats {
	return PipeStats{InUse: p.inUse.Load(), Open: p.open.Load()}
}

// Close closes the idle pipes. Pipes lent out are closed when they come
// back only if the pool is full; call Close after the relays have ended.
func (p *PipePool) Close() {
	p.mu.Lock()
	free := p.free
	p.free = nil
	p.mu.Unlock()
	for _, pp := range free {
		p.close(pp)
	}
}
