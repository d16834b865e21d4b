package splice

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Parker holds relay directions that have been idle for a while without a
// goroutine: their source sockets wait in an epoll set of the Parker's own
// (level-triggered, one-shot), and one goroutine, itself parked on Go's
// netpoller through that epoll descriptor, resumes a direction with a
// fresh goroutine when its socket becomes readable. Idle timeouts of
// parked directions run on runtime timers.
//
// A connection whose directions are both parked costs its sockets, its
// TLS state and a few hundred bytes: no goroutine stack, no buffer, no
// pipe. One Parker serves any number of relays; Close it after they end.
type Parker struct {
	epfd int
	file *os.File // epfd, registered with Go's netpoller
	done chan struct{}

	token  atomic.Uint64
	parked [parkShards]parkShard // by token

	// ending queues the tokens of directions whose sources ended (a FIN
	// or a reset), resumed at most maxEnding at a time (queueEnding).
	endMu     sync.Mutex
	ending    []uint64
	endingRun int
	maxEnding int
}

// The parked directions are kept by token in shards, each under its own
// lock. With one lock, a goroutine preempted while it held it (the
// watcher, resuming a batch) stopped every relay that parked or resumed
// until the scheduler ran it again: in a reconnect storm that was seconds,
// and 4,408 goroutines waited on the lock.
const parkShards = 64

type parkShard struct {
	mu sync.Mutex
	m  map[uint64]*half
}

func (p *Parker) shard(tok uint64) *parkShard { return &p.parked[tok%parkShards] }

// lookup returns the direction parked under tok, nil if none is.
func (p *Parker) lookup(tok uint64) *half {
	sh := p.shard(tok)
	sh.mu.Lock()
	h := sh.m[tok]
	sh.mu.Unlock()
	return h
}

// forget drops tok's entry.
func (p *Parker) forget(tok uint64) {
	sh := p.shard(tok)
	sh.mu.Lock()
	delete(sh.m, tok)
	sh.mu.Unlock()
}

// A reconnect storm closes thousands of parked connections at once. Resumed
// together, their directions would be thousands of runnable goroutines,
// and a connection that stayed open would wait behind all of them to move
// a message (S7: 6,191 of 10,218 runnable goroutines were such resumes).
// Ends are not in a hurry: they go through a queue, and at most
// maxEndingPerCPU per CPU Go runs wait to start at a time, while
// directions woken by data resume at once. The turn ends when the
// direction's goroutine starts, not when its end is done: that may wait
// for a slow peer to take the last bytes.
const maxEndingPerCPU = 16

// NewParker creates the epoll set and starts its watcher goroutine.
func NewParker() (*Parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("splice: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("splice: set epoll fd non-blocking: %w", err)
	}
	p := &Parker{
		epfd: epfd,
		file: os.NewFile(uintptr(epfd), "splice-parker"),
		done: make(chan struct{}),
		// Read once: a Parker started before GOMAXPROCS changes keeps
		// its first bound, which only paces ends.
		maxEnding: maxEndingPerCPU * runtime.GOMAXPROCS(0),
	}
	rc, err := p.file.SyscallConn()
	if err != nil {
		p.file.Close()
		return nil, fmt.Errorf("splice: parker: %w", err)
	}
	go p.watch(rc)
	return p, nil
}

// Close stops the watcher and closes the epoll set. Directions still
// parked would never resume; close the Parker after its relays have ended.
func (p *Parker) Close() error {
	err := p.file.Close()
	<-p.done
	return err
}

// Parked reports how many relay directions are parked now.
func (p *Parker) Parked() int {
	n := 0
	for i := range p.parked {
		sh := &p.parked[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// watch waits for the epoll set to report ready sockets and resumes their
// directions. It is the Parker's only goroutine.
func (p *Parker) watch(rc interface {
	Read(func(uintptr) bool) error
}) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	var ready, ending []uint64
	for {
		ready, ending = ready[:0], ending[:0]
		err := rc.Read(func(fd uintptr) bool {
			n, err := epollPoll(int(fd), events)
			if err != nil || n <= 0 {
				return false // nothing ready (or EINTR): wait for the netpoller
			}
			for _, ev := range events[:n] {
				tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
				if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					ending = append(ending, tok)
				} else {
					ready = append(ready, tok)
				}
			}
			return true
		})
		if err != nil {
			return // closed
		}
		for _, tok := range ready {
			if h := p.lookup(tok); h != nil {
				h.resume(true)
			}
		}
		if len(ending) > 0 {
			p.queueEnding(ending)
		}
	}
}

// queueEnding queues directions woken by their source's end, and resumes
// as many as the Parker's turns for ends allow.
func (p *Parker) queueEnding(toks []uint64) {
	p.endMu.Lock()
	p.ending = append(p.ending, toks...)
	p.endMu.Unlock()
	p.startEnding()
}

// endDone gives back the turn of a direction resumed by startEnding, once
// its goroutine runs.
func (p *Parker) endDone() {
	p.endMu.Lock()
	p.endingRun--
	p.endMu.Unlock()
	p.startEnding()
}

// startEnding resumes queued ends while turns are free. A direction
// resumed otherwise meanwhile (its relay closing, its idle timeout) has
// left p.parked, and its token is skipped.
func (p *Parker) startEnding() {
	for {
		p.endMu.Lock()
		if len(p.ending) == 0 || p.endingRun >= p.maxEnding {
			if len(p.ending) == 0 {
				p.ending = nil // let the storm's backing array go
			}
			p.endMu.Unlock()
			return
		}
		tok := p.ending[0]
		p.ending = p.ending[1:]
		p.endingRun++
		p.endMu.Unlock()
		if h := p.lookup(tok); h == nil || !h.resumeFor(true, true) {
			p.endMu.Lock()
			p.endingRun--
			p.endMu.Unlock()
		}
	}
}

// add registers h's source socket under a fresh token.
func (p *Parker) add(h *half) error {
	tok := p.token.Add(1)
	sh := p.shard(tok)
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[uint64]*half)
	}
	sh.m[tok] = h
	sh.mu.Unlock()
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd:     int32(uint32(tok)),
		Pad:    int32(uint32(tok >> 32)),
	}
	err := control(h.src.sock, func(fd int) error {
		if h.inSet {
			// Still in the set from the last park, disarmed by the
			// event that resumed it: re-arm under the new token.
			err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
			if err != unix.ENOENT {
				return err
			}
		}
		return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	})
	if err != nil {
		p.forget(tok)
		return fmt.Errorf("splice: park: %w", err)
	}
	h.token = tok
	h.inSet = true
	return nil
}

// remove forgets h's registration. When its event fired (fired), the
// one-shot registration is disarmed already and stays in the set for the
// next park to re-arm: a system call saved each time a direction resumes.
// Otherwise it leaves the set. A socket closed meanwhile left the set by
// itself when it was closed; an event of a stale token is ignored.
func (p *Parker) remove(h *half, fired bool) {
	p.forget(h.token)
	if fired {
		return
	}
	h.inSet = false
	// The direction resumes whatever this returns: ENOENT or a closed
	// conn both mean the socket is no longer in the set.
	h.src.sock.Control(func(fd uintptr) {
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// epollPoll collects the events ready in epoll set epfd without waiting,
// as a raw system call (see rawIO). A process that idles between
// messages sends sysmon, Go's monitor thread, into a deep sleep, and the
// first system call the scheduler is told of after that wakes it, which
// then checks every 20 µs until the process idles again: a futex wake-up
// and preemptions on the CPU that serves the message. This is the one
// call on a parked direction's resume path that went through the
// scheduler.
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
