package l4

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// netProbe measures how long a goroutine that the network wakes waits to
// run: it sends a byte to itself over a socket pair and a goroutine blocked
// in Go's netpoller reads it. With every processor busy, Go finds such
// goroutines from its monitor thread, every 10 to 20 ms, and queues them
// on the global run queue, of which a busy processor runs one goroutine
// once in 61 of its turns while its own queue has work; a goroutine handed
// the CPU by another (a turn handed over) does not even count as a turn.
// Goroutines woken by other goroutines (a handed-over turn, a new
// connection's, a resumed relay direction) go on that processor's own
// queue, ahead. So in a reconnect storm whose handshakes the turns hand
// on from one to the next, the relays of the connections that stayed
// open, and the handshakes waiting for their clients' answers, waited in
// the global queue for seconds (S7, resumed storm: 8,405 goroutines there
// for two seconds, GODEBUG=schedtrace; the stayers' echoes stalled 2 to 5
// s). The probe's byte waits in that queue with them: while one has been
// away longer than probeLate, hsTurns starts no new handshake, and the
// probe's return lets them start again.
type netProbe struct {
	r     net.Conn // the read end, in Go's netpoller
	mu    sync.Mutex
	wfd   int // the write end; -1 once closed
	epoch time.Time
	sent  atomic.Int64 // when the byte away was sent, ns from epoch + 1; 0: none away
	dead  atomic.Bool  // the reading goroutine has stopped
	back  func()       // called when a byte is back
	done  chan struct{}
	once  sync.Once
}

// probeLate is how long the probe's byte may be away before new
// handshakes wait. Go's monitor looks for network events 10 to 20 ms apart
// while the process is busy, and a GC's pause or assists add to that, so
// a bound of 20 ms held new handshakes back in every busy moment and let
// them go in bursts: under a flood of 64 handshaking clients an open
// connection's p50 went from 1 ms to 40, and the stayers' p50 in S7's
// resumed storm to 10-70 ms. At 100 ms the probe holds back only a real
// backlog: the flood's open connection keeps a p50 of 1-2 ms (its p99
// spread 7-114 ms over three runs, as without the probe), S7's stayers
// a p99 of 411-646 ms against 2-5 s (bench/README.md, "The stayers' tail
// in storms, third try").
const probeLate = 100 * time.Millisecond

// startNetProbe starts a probe; back is called, on the probe's goroutine,
// each time its byte comes back.
func startNetProbe(back func()) (*netProbe, error) {
	r, wfd, err := probePair()
	if err != nil {
		return nil, err
	}
	p := &netProbe{r: r, wfd: wfd, epoch: time.Now(), back: back, done: make(chan struct{})}
	go p.read()
	return p, nil
}

func (p *netProbe) read() {
	defer close(p.done)
	var buf [16]byte
	for {
		if _, err := p.r.Read(buf[:]); err != nil {
			// Closed, or failed: either way the probe says nothing more,
			// and nobody waits for a byte that will not come back.
			p.dead.Store(true)
			p.back()
			return
		}
		p.sent.Store(0)
		p.back()
	}
}

// send sends a byte, unless one is away.
func (p *netProbe) send() {
	if !p.sent.CompareAndSwap(0, int64(time.Since(p.epoch))+1) {
		return
	}
	p.mu.Lock()
	err := errProbeClosed
	if p.wfd >= 0 {
		err = probeWrite(p.wfd)
	}
	p.mu.Unlock()
	if err != nil {
		p.sent.Store(0) // closed: the probe says nothing from now on
	}
}

var errProbeClosed = errors.New("l4: probe closed")

// errNoProbe is startNetProbe's error where there is no probe (not Linux).
var errNoProbe = errors.New("l4: no network probe on this system")

// late reports whether the byte away has been away longer than probeLate;
// never once the probe has stopped.
func (p *netProbe) late() bool {
	s := p.sent.Load()
	return s != 0 && !p.dead.Load() && time.Since(p.epoch)-time.Duration(s-1) > probeLate
}

// close stops the probe's goroutine and closes its sockets; late is false
// from then on (the goroutine, stopping, says so).
func (p *netProbe) close() {
	p.once.Do(func() {
		p.r.Close()
		<-p.done
		p.mu.Lock()
		probeClose(p.wfd)
		p.wfd = -1 // not written again: the number may be reused
		p.mu.Unlock()
	})
}
