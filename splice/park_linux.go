package splice

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Parker holds relay directions that have been idle for a while without a
// goroutine: their source sockets wait in an epoll set of the Parker's own
// (see add), and one goroutine, itself parked on Go's netpoller through
// that epoll descriptor, resumes a direction on a runner (runners.go)
// when its socket becomes readable. Idle timeouts of parked directions
// run on runtime timers.
//
// A connection whose directions are both parked costs its sockets, its
// TLS state and a few hundred bytes: no goroutine stack, no buffer, no
// pipe. One Parker serves any number of relays; Close it after they end.
type Parker struct {
	epfd int
	file *os.File // epfd, registered with Go's netpoller
	done chan struct{}

	// parked maps a registration's token to its direction, from its first
	// park to the end of its relay (forget). Not a map
	// under one mutex: in a reconnect storm, with thousands of goroutines
	// runnable, a holder preempted inside the lock waited seconds to run
	// again while every direction that parked or resumed queued behind it
	// (a dump held 1,891 of them). sync.Map's reads take no lock and its
	// writes lock one node of its trie.
	parked sync.Map      // uint64 -> *half
	count  atomic.Int64  // directions parked now
	token  atomic.Uint64 // the last token given
	// rereads counts parks that read again instead, for an edge the
	// watcher took while the direction ran (half.park); for tests.
	rereads atomic.Int64

	// spare holds the in-place state that directions dropped when they
	// parked, for the next that resumes: a message of sparse traffic
	// resumes and parks both directions, and made and dropped two of
	// them, a third of what an echo allocated (bench/README.md).
	spare sync.Pool // *inPlace

	runners *runners // the goroutines that run resumed directions
}

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
		epfd:    epfd,
		file:    os.NewFile(uintptr(epfd), "splice-parker"),
		done:    make(chan struct{}),
		runners: newRunners(),
	}
	rc, err := p.file.SyscallConn()
	if err != nil {
		p.file.Close()
		return nil, fmt.Errorf("splice: parker: %w", err)
	}
	go p.watch(rc)
	return p, nil
}

// Close stops the watcher and the runners and closes the epoll set.
// Directions still parked would never resume; close the Parker after its
// relays have ended, and not from a relay's own callback: it waits for
// every runner, the one running that callback too.
func (p *Parker) Close() error {
	err := p.file.Close()
	<-p.done
	p.runners.stop()
	return err
}

// Parked reports how many relay directions are parked now.
func (p *Parker) Parked() int {
	return int(p.count.Load())
}

// watch waits for the epoll set to report ready sockets and resumes their
// directions, on runners.
func (p *Parker) watch(rc interface {
	Read(func(uintptr) bool) error
}) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	var ready []uint64
	// One callback for every wait: one made in the loop is made anew
	// for every event the watcher wakes for.
	poll := func(fd uintptr) bool {
		n, err := epollPoll(int(fd), events)
		if err != nil || n <= 0 {
			return false // nothing ready (or EINTR): wait for the netpoller
		}
		for _, ev := range events[:n] {
			ready = append(ready, uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32)
		}
		return true
	}
	for {
		ready = ready[:0]
		err := rc.Read(poll)
		if err != nil {
			return // closed
		}
		for _, tok := range ready {
			if h, ok := p.parked.Load(tok); ok {
				h.(*half).resume(true)
			}
		}
	}
}

// add registers h's source socket, or re-arms it. A direction that parks
// as soon as its source is empty (sparse, see half.parkNow) is registered
// to last: edge-triggered, armed from one park to the next, so that the
// message that resumes it and its park again cost no system call here.
// An event that comes while such a direction runs is not lost: the
// watcher marks it woken, and its next park reads first (half.park).
// Any other direction is registered one-shot, as before it resumed:
// level-triggered, so bytes already queued fire at once, and disarmed by
// the event that resumes it, until its next park re-arms it. A direction
// that resumes to wait on its goroutine leaves the set (remove), and gets
// no event for its traffic; one registered to last that runs on without
// parking (a stream) has the watcher woken for it until it parks and
// resumes again, then no longer sparse.
func (p *Parker) add(h *half) error {
	g := &h.reg
	if g.ctl == nil {
		g.ctl = h.epollCtl
	}
	if g.token == 0 {
		g.token = p.token.Add(1)
		p.parked.Store(g.token, h)
	}
	if lasting := h.sparse; !g.keptArmed(lasting) {
		g.op = regArmOnce
		if lasting {
			g.op = regArmLasting
		}
		g.errno = 0
		err := h.src.sock.Control(g.ctl)
		if err == nil && g.errno != 0 {
			err = unix.Errno(g.errno)
		}
		if err != nil {
			return fmt.Errorf("splice: park: %w", err)
		}
		g.inSet, g.lasting = true, lasting
	}
	p.count.Add(1)
	return nil
}

// remove records that h resumed. A registration to last stays armed if h
// resumed sparse: it parks again as soon as its source is empty. One
// whose event fired (fired) is disarmed and stays in the set for the next
// park to re-arm: a system call saved each time a direction resumes.
// Otherwise the socket leaves the set, so that a direction waiting on its
// goroutine gets no events here. A socket closed meanwhile left the set
// by itself when it was closed.
func (p *Parker) remove(h *half, fired bool) {
	p.count.Add(-1)
	g := &h.reg
	if fired && (!g.lasting || h.sparse) {
		return
	}
	p.leave(h)
}

// leave takes h's socket out of the set, if it is in it.
func (p *Parker) leave(h *half) {
	g := &h.reg
	if !g.inSet {
		return
	}
	g.inSet, g.lasting = false, false
	// ENOENT or a closed conn both mean the socket is no longer in the
	// set.
	g.op = regLeave
	h.src.sock.Control(g.ctl)
}

// drop ends h's registration at the end of its relay here: its token is
// forgotten, and one registered to last leaves the set, in case the socket
// lives on in another process once closed here (a relay handed over, or
// thawed after its move began), where its traffic would go on waking the
// watcher. A one-shot registration is disarmed: a frozen or finished
// direction is not parked.
func (p *Parker) drop(h *half) {
	if h.reg.lasting {
		p.leave(h)
	}
	p.forget(h)
}

// forget drops h's token: later events under it are ignored.
func (p *Parker) forget(h *half) {
	if g := &h.reg; g.token != 0 {
		p.parked.Delete(g.token)
		g.token = 0
	}
}

// registration is a direction's entry in the Parker's epoll set. Its
// token and callback are kept from one park to the next, so that parking
// allocates nothing: a message of sparse traffic parks both directions.
// It is small (24 bytes) because every idle connection holds two. One
// goroutine at a time uses it, as its op is set before each call: the
// half's while it parks, resume's caller before it restarts the half,
// and drop once the half no longer runs here.
type registration struct {
	token uint64 // the Parker's token for the direction; 0: none yet
	// ctl is the half's epollCtl, bound once: a method value made at
	// each park would allocate.
	ctl   func(fd uintptr)
	errno int32 // epollCtl's result
	op    regOp // what epollCtl does
	// inSet: the socket is in the set; lasting: edge-triggered, armed
	// from one park to the next, else one-shot (see Parker.add).
	inSet, lasting bool
}

// keptArmed reports whether a half parking now, sparse or not, stays in
// the set as it is, armed edge-triggered since it last parked: the one
// park that makes no system call, so the one that would miss an edge the
// watcher took while the half ran (half.woken). Any other park arms the
// socket anew, and epoll reports bytes already queued at once.
func (g *registration) keptArmed(sparse bool) bool {
	return g.inSet && g.lasting && sparse
}

// regOp is what a registration's epollCtl does with the socket.
type regOp uint8

const (
	regArmOnce    regOp = iota // arm one-shot, level-triggered
	regArmLasting              // arm edge-triggered, to last
	regLeave                   // take the socket out of the set
)

// epollCtl does h.reg.op for h's source socket fd, in the epoll set of
// h's Parker. Arming modifies the socket's entry if it is in the set, and
// adds one if not.
func (h *half) epollCtl(fd uintptr) {
	g, epfd := &h.reg, h.r.parker.epfd
	if g.op == regLeave {
		unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		return
	}
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd:     int32(uint32(g.token)),
		Pad:    int32(uint32(g.token >> 32)),
	}
	if g.op == regArmLasting {
		ev.Events = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET
	}
	var err error = unix.ENOENT
	if g.inSet {
		err = unix.EpollCtl(epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
	}
	if err == unix.ENOENT {
		err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}
	if errno, ok := err.(unix.Errno); ok {
		g.errno = int32(errno)
	} else if err != nil {
		g.errno = int32(unix.EIO) // EpollCtl returns only errnos
	}
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
