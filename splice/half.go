package splice

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// endpoint is one side of a relay as the relay sees it. Its flags come
// last so that two endpoints and the rest of a relay fit a smaller size
// class.
type endpoint struct {
	conn net.Conn
	// sock is the socket to wait on: conn itself, or the socket under a
	// *tls.Conn whose transport is a Transport. Nil: reads block.
	sock syscall.RawConn
	tr   *Transport // conn is a *tls.Conn over tr
	// tcp is the socket beneath conn, if any, to ask its state (see
	// resetSeen): sock, or that of a *tls.Conn over a bare socket.
	tcp syscall.RawConn
	// kernel is conn when the kernel runs its TLS record layer.
	kernel KernelRecords
	// finSent: the relay has half-closed conn (see resetSeen); eofSeen:
	// conn's own stream has ended cleanly.
	finSent, eofSeen atomic.Bool
	raw              bool // conn is the socket itself: nothing buffered above it
	// notified says kernel's peer's close_notify came (only the reading
	// half touches it).
	notified bool
}

// init sets e up for c, a socket or a *tls.Conn over a Transport.
func (e *endpoint) init(c net.Conn) {
	e.conn = c
	e.kernel, _ = c.(KernelRecords)
	if rc := rawSocket(c); rc != nil {
		e.sock, e.tcp, e.raw = rc, rc, true
		return
	}
	if tc, ok := c.(*tls.Conn); ok {
		under := beneath(tc.NetConn(), func(c net.Conn) bool { _, ok := c.(*Transport); return ok })
		if tr, ok := under.(*Transport); ok && tr.sock != nil {
			e.sock, e.tcp, e.tr = tr.sock, tr.sock, tr
		} else {
			e.tcp = rawSocket(under)
		}
	}
}

// half is one direction of a relay. Its goroutine runs copyHalf; a parked
// half has none, and unpark runs it on a runner again.
type half struct {
	r        *relay
	src, dst *endpoint
	counter  *atomic.Int64
	// inPlace holds the state of the direction's moves in place (see
	// inPlace) while it runs, if inPlaceOK; a parked direction drops it.
	inPlace *inPlace
	// The fields are ordered so that a half fits a smaller size class:
	// tens of thousands of idle connections hold two each (bench S4).
	dir              direction
	srcPeer, dstPeer peer
	splice           bool // both ends are sockets: splice(2) through a pipe
	inPlaceOK        bool // while it copies, the direction moves its bytes in place

	// Touched only by the goroutine running the half.
	readArm, writeArm deadlineArm
	rateStart         time.Time // start of the window rateBytes counts in
	rateBytes         int64
	emptyFlushes      int32     // flushes in a row that found nothing
	emptyReads        int32     // kernel TLS reads in a row that found an empty record
	drained           shortRead // the last read from src took all it had
	batching          bool      // SO_RCVLOWAT raised on src (see batch.go)
	// Set while the half is parked (resume, idleFired, under r.mu) for
	// the goroutine that then runs it. sparse: the half was resumed after
	// a long quiet (see parkNow), so it parks again as soon as its source
	// is empty. idleDue: the idle timer resumed it with the timeout due.
	sparse, idleDue bool

	// Guarded by r.mu.
	frozen   bool // stopped for a Freeze (see freeze.go)
	parked   bool
	woken    bool        // the Parker's event came while the half ran (resume)
	timer    *time.Timer // the idle timeout while parked
	timerAt  time.Time   // when timer fires; zero: stopped or fired
	parkedAt time.Time   // when it last parked
	// reg is src's entry in the Parker's epoll set. Parker.add and remove
	// touch it in the order the half parks and resumes; drop once it no
	// longer runs here (relay.complete, Handle.Release).
	reg registration
}

func newHalf(r *relay, dir direction, noSplice bool) *half {
	h := &half{r: r, dir: dir}
	if dir == toBackend {
		h.src, h.dst = &r.ends[clientPeer], &r.ends[backendPeer]
		h.srcPeer, h.dstPeer, h.counter = clientPeer, backendPeer, &r.counts.In
	} else {
		h.src, h.dst = &r.ends[backendPeer], &r.ends[clientPeer]
		h.srcPeer, h.dstPeer, h.counter = backendPeer, clientPeer, &r.counts.Out
	}
	h.splice = h.src.raw && h.dst.raw && !noSplice
	h.inPlaceOK = !h.splice && h.canInPlace()
	if h.src.tr != nil {
		// Only this direction reads the TLS conn, so only it reads the
		// transport: from now on reads tell "nothing queued" apart.
		h.src.tr.nonblock = true
	}
	return h
}

// copyHalf runs the direction until it ends or parks. It is a named method
// so that each direction shows up by name in goroutine dumps.
func (h *half) copyHalf() {
	res, parked := h.loop()
	if parked {
		return
	}
	h.r.finish(h, res)
}

// loop alternates between moving what is ready, with a buffer or pipe
// borrowed, and waiting for more with nothing borrowed. It reports
// parked=true if the half handed itself to the Parker.
func (h *half) loop() (res halfResult, parked bool) {
	if h.idleDue {
		// Resumed by the idle timer with the timeout due: end now
		// rather than after another wait.
		h.idleDue = false
		if res, done := h.timedOut(); done {
			return res, false
		}
	}
	for {
		if h.inPlaceNow() {
			res, done, park := h.moveInPlace()
			switch {
			case done:
				return res, false
			case h.stopForFreeze():
				return halfResult{}, true
			case park:
				// Dropped before parking: once parked, the half
				// is the next goroutine's.
				m := h.inPlace
				h.inPlace = nil
				parked, again := h.park()
				if parked {
					h.dropInPlace(m)
					return halfResult{}, true
				}
				h.inPlace = m
				if !again {
					m.noPark = true // waits in place instead
				}
			}
			continue
		}
		if h.readArm.span < 0 && h.parkNow() && h.src.sock != nil {
			h.armRead(0) // see moveInPlace
		}
		before := h.counter.Load()
		if res, done := h.drain(); done {
			return res, false
		}
		if h.stopForFreeze() {
			return halfResult{}, true
		}
		if h.src.sock != nil {
			h.pace(h.counter.Load() - before)
		}
		if h.batching {
			if res, done := h.waitBatch(); done {
				return res, false
			}
			continue
		}
		if h.parkNow() {
			if parked, again := h.park(); parked {
				return halfResult{}, true
			} else if again {
				continue
			}
		}
		res, done, park := h.wait()
		if done {
			return res, false
		}
		if park {
			if parked, _ := h.park(); parked {
				return halfResult{}, true
			}
		}
	}
}

// parkNow reports whether the half, its source empty, parks at once
// rather than after ParkAfter of quiet. A direction that has moved nothing
// yet does: most directions of a new connection wait for their peer's
// first bytes, and a burst of new connections would otherwise hold two
// goroutines each for that long. So does a sparse one: a WebSocket that
// speaks once every few seconds would otherwise keep a goroutine and a
// read deadline for a second after each message, and pay a wake-up at
// its end, only to park all the same. Sparse means the half had been
// parked for r.sparse (three quarters of ParkAfter) when bytes resumed
// it, so the next message is likely to come about when it would have
// parked anyway; well below ParkAfter, parking after every message costs
// more than waiting for the next (bench/README.md, "Sparse traffic").
// The first message of a burst after a pause costs a park and a resume
// more; the next, finding the half parked only briefly, is waited for.
func (h *half) parkNow() bool {
	return h.r.parker != nil && (h.sparse || h.counter.Load() == 0)
}

func (h *half) drain() (halfResult, bool) {
	if h.splice {
		return h.drainSplice()
	}
	return h.drainCopy()
}

// drainCopy borrows a buffer and moves bytes until the source has nothing
// queued (done=false: go and wait) or the direction ends (done=true).
func (h *half) drainCopy() (halfResult, bool) {
	bufp := h.r.buffers.Get()
	defer h.r.buffers.Put(bufp)
	buf := *bufp
	for {
		if h.src.sock == nil {
			// Reads block: bound them by the inactivity timeout.
			if t := h.r.timeout(); h.armRead(t) && h.r.timeout() != t {
				h.readArm.forget() // see wait
				continue
			}
		}
		n, rerr := h.read(buf)
		if n > 0 {
			h.moving(time.Now())
			w, werr := h.write(buf[:n])
			h.counter.Add(int64(w))
			if werr != nil {
				return h.writeFailed(werr), true
			}
			if h.r.freezeAsked() && rerr == nil {
				return halfResult{}, false // everything read is written
			}
		}
		if res, more, done := h.readEnded(rerr); !more {
			return res, done
		}
	}
}

// readEnded sorts out what a read from the source returned: more=true to
// read again (no error, or a read deadline that passed while bytes may be
// queued all the same, perhaps long ago while the half was parked);
// otherwise done=false to go and wait (nothing queued) or done=true with
// the direction's end.
func (h *half) readEnded(rerr error) (res halfResult, more, done bool) {
	switch {
	case rerr == nil:
		return halfResult{}, true, false
	case rerr == errWouldBlock: // the common case: before errors.Is below
		return halfResult{}, false, false
	case rerr == io.EOF && h.src.kernel != nil && h.src.tcp != nil && !finReceived(h.src.tcp):
		// Kernel TLS reads nothing from a zero-length application data
		// record, which TLS allows; only a FIN ends the stream. The
		// record is gone: wait for the next, but not for ever if the
		// kernel keeps saying nothing.
		if h.emptyReads++; h.emptyReads > maxEmptyReads {
			return stopped(h.srcPeer, errEmptyReads), false, true
		}
		return halfResult{}, false, false
	case rerr == io.EOF, errors.Is(rerr, io.ErrUnexpectedEOF):
		return halfResult{end: h.srcEnded(rerr), peer: h.srcPeer}, false, true
	case isTimeout(rerr):
		if res, done := h.timedOut(); done {
			return res, false, true
		}
		h.armRead(h.span())
		return halfResult{}, true, false
	case h.src.kernel != nil && !errors.Is(rerr, net.ErrClosed):
		return h.control(rerr)
	}
	return stopped(h.srcPeer, rerr), false, true
}

// control hands a kernel TLS source the error that stopped a read or
// splice: a control record (close_notify ends the stream cleanly, a key
// update is followed and the direction reads on) or a failure of the
// record layer, named.
func (h *half) control(rerr error) (res halfResult, more, done bool) {
	data, err := h.src.kernel.Control(rerr)
	switch {
	case err == io.EOF:
		h.src.notified = true
		return halfResult{end: h.srcEnded(io.EOF), peer: h.srcPeer}, false, true
	case err != nil:
		return stopped(h.srcPeer, err), false, true
	case len(data) > 0:
		h.moving(time.Now())
		w, werr := h.write(data)
		h.counter.Add(int64(w))
		if werr != nil {
			return h.writeFailed(werr), false, true
		}
	}
	return halfResult{}, true, false
}

// write writes p to the destination, after what a kernel TLS destination
// owes its peer first.
func (h *half) write(p []byte) (int, error) {
	if err := h.prepareWrite(); err != nil {
		return 0, err
	}
	return h.dst.conn.Write(p)
}

// prepareWrite lets a kernel TLS destination send what it owes its peer
// (a key update) before the direction writes to it.
func (h *half) prepareWrite() error {
	if h.dst.kernel == nil {
		return nil
	}
	return h.dst.kernel.PrepareWrite()
}

// srcEnded says how the source's stream ended when a read found its end
// (io.EOF; from crypto/tls, io.ErrUnexpectedEOF too).
func (h *half) srcEnded(rerr error) End {
	// The state first, then the flag: the other direction sets finSent
	// before it sends sluice's FIN on this socket, and that FIN, once
	// answered, leaves the socket in CLOSE too. Asked the other way round,
	// a clean end that met sluice's own FIN passed for a reset (the soak
	// saw 18 streams in 80,000 cut so).
	if h.src.tcp != nil && resetSeen(h.src.tcp) && !h.src.finSent.Load() {
		return EndReset
	}
	if rerr != io.EOF || (h.src.tr != nil && h.src.tr.eof) {
		return EndTruncated // see Transport.eof
	}
	if h.src.kernel != nil && !h.src.notified {
		return EndTruncated // a FIN without close_notify
	}
	return EndClosed
}

// writeFailed is the end of the direction after a write to dst failed.
func (h *half) writeFailed(werr error) halfResult { return stopped(h.dstPeer, werr) }

// read reads from the source: without waiting when the source has a socket
// to wait on, blocking otherwise.
func (h *half) read(p []byte) (int, error) {
	if h.src.raw {
		return h.drained.read(h.src.sock, p)
	}
	return h.src.conn.Read(p) // a *tls.Conn over a non-blocking Transport, or blocking
}

// drainSplice borrows a pipe and splices until the source has nothing
// queued or the direction ends. A socket splice(2) refuses turns the
// direction into a copying one.
func (h *half) drainSplice() (halfResult, bool) {
	pp, err := h.r.pipes.get()
	if err != nil {
		// Out of descriptors, most likely: copy instead, for good.
		h.splice = false
		return h.drainCopy()
	}
	defer h.r.pipes.put(pp)
	for {
		_, rerr := spliceIn(h.src.sock, pp)
		if rerr != nil {
			// From kernel TLS, EINVAL is a control record (see control).
			if isSpliceUnsupported(rerr) && h.src.kernel == nil {
				h.splice = false
				return halfResult{}, false
			}
			res, more, done := h.readEnded(rerr)
			if !more {
				return res, done
			}
			continue
		}
		h.moving(time.Now())
		if err := h.prepareWrite(); err != nil {
			return h.writeFailed(err), true
		}
		w, werr := spliceOut(h.dst.sock, pp)
		h.counter.Add(int64(w))
		if werr != nil {
			return h.writeFailed(werr), true
		}
		if h.r.freezeAsked() {
			return halfResult{}, false // the pipe is empty
		}
	}
}

// wait parks the goroutine on the netpoller until the source may have
// bytes, with nothing borrowed. It ends the direction on the idle timeout,
// and asks to park (park=true) once the source has been quiet for
// ParkAfter.
func (h *half) wait() (res halfResult, done, park bool) {
	if !h.armWait() {
		return halfResult{}, false, false
	}
	err := h.drained.sock.wait(h.src.sock)
	if err == nil {
		return halfResult{}, false, false
	}
	if !isTimeout(err) {
		return stopped(h.srcPeer, err), true, false
	}
	if res, done := h.timedOut(); done {
		return res, true, false
	}
	return halfResult{}, false, h.r.parker != nil
}

// armWait arms the source's read deadline for a wait (see span). It
// reports false, with the deadline in force unknown, when the other
// direction finished meanwhile: the half-close deadline it set may have
// just been overwritten by the longer idle one, and the caller must look
// again before it waits.
func (h *half) armWait() bool {
	t := h.r.timeout()
	if h.armRead(h.span()) && h.r.timeout() != t {
		h.readArm.forget()
		return false
	}
	return true
}

// span is how far ahead the read deadline of a waiting source goes: the
// inactivity timeout in force, or ParkAfter when that is sooner and the
// half may park.
func (h *half) span() time.Duration {
	t := h.r.timeout()
	if h.r.parker != nil && (t == 0 || h.r.parkAfter < t) {
		return h.r.parkAfter
	}
	return t
}

// timedOut handles a read deadline that passed: the end of the direction
// if nothing moved either way for the timeout in force, else a reason to
// re-arm (traffic in the other direction keeps the relay alive).
func (h *half) timedOut() (halfResult, bool) {
	if t := h.r.timeout(); t > 0 && h.r.quiet() >= t {
		return halfResult{idle: true, peer: h.srcPeer}, true
	}
	h.readArm.forget()
	return halfResult{}, false
}

// armRead keeps the source's read deadline at most span ahead, moving it
// only when it has gone stale (see deadlineArm); span 0 clears it. It
// reports whether it moved the deadline.
func (h *half) armRead(span time.Duration) bool {
	if span <= 0 {
		if h.readArm.span != 0 {
			h.src.conn.SetReadDeadline(time.Time{})
			h.readArm = deadlineArm{} // known: none
		}
		return false
	}
	now := time.Now()
	if !h.readArm.due(now, span) {
		return false
	}
	h.src.conn.SetReadDeadline(now.Add(span))
	return true
}

// moving records that bytes were read at now and are about to be written:
// the relay is active, and the write is bounded by the inactivity timeout.
// The write deadline is armed just before a write, not with the read
// deadline: bytes that arrive at the end of a long quiet read must still
// get a whole period to be written.
func (h *half) moving(now time.Time) {
	h.emptyReads = 0
	h.r.touchAt(now)
	t := h.r.timeout()
	if t <= 0 {
		return
	}
	if h.writeArm.due(now, t) {
		h.dst.conn.SetWriteDeadline(now.Add(t))
	}
}

// park hands the half to the Parker: its goroutine may end. It reports
// false, and the goroutine carries on, if the relay is closing, the idle
// timeout is already due, or the socket cannot be registered; again=true
// if the source had bytes come while the half ran after the Parker's
// event fired for it (see Parker.add): read them first.
func (h *half) park() (parked, again bool) {
	r := h.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false, false
	}
	if r.freezing.Load() {
		// Parking is a point with nothing in flight: stop here instead.
		r.frozeLocked(h)
		return true, false
	}
	if h.woken {
		// An edge the watcher took while the half ran matters only to
		// a registration that parking leaves as it is. Otherwise it is
		// stale (it came between a resume and leaving the set), and
		// reading again here would keep a direction that is not sparse
		// on its goroutine for another ParkAfter.
		h.woken = false
		if h.reg.keptArmed(h.sparse) {
			r.parker.rereads.Add(1)
			return false, true
		}
	}
	var left time.Duration
	if t := r.timeout(); t > 0 {
		if left = t - r.quiet(); left <= 0 {
			return false, false
		}
	}
	if err := r.parker.add(h); err != nil {
		return false, false
	}
	h.parked = true
	h.parkedAt = time.Now()
	if left > 0 {
		h.armIdleLocked(h.parkedAt, left)
	}
	// A read deadline in force may pass while the half is parked: the
	// next read must look (see moveInPlace). None stays none, unless the
	// other direction's end set one (finish).
	if h.readArm.span != 0 || r.halfDone.Load() {
		h.readArm.forget()
	}
	return true, false
}

// unpark resumes a parked half on a goroutine, which reads its
// socket to find out what woke it: bytes, EOF, an error, a closed conn or
// nothing (then it waits again). Calls for a half that is not parked do
// nothing. The Parker's watcher, the idle timer, the other direction's end
// and the relay's closing all call it.
func (h *half) unpark() { h.resume(false) }

// resume is unpark; fired says the Parker's event for h woke it.
func (h *half) resume(fired bool) {
	r := h.r
	r.mu.Lock()
	if !h.parked {
		if fired {
			// Bytes came while the half ran, its registration armed
			// all along (see Parker.add): its next park looks first.
			h.woken = true
		}
		r.mu.Unlock()
		return
	}
	h.parked = false
	h.woken = false
	if !fired {
		// The relay is closing or its timeout changed: whatever resumes
		// the half now, it does not come back to this timer.
		h.stopIdleLocked()
	}
	h.sparse = fired && time.Since(h.parkedAt) >= r.sparse
	r.mu.Unlock()
	r.parker.remove(h, fired)
	r.start(h)
}

// armIdleLocked arms the idle timeout of a half parking at now, due in
// left. A timer still armed from an earlier park and due no later stays
// as it is: when it fires, idleFired looks at how long the relay has
// really been quiet. So a message that resumes a parked half and lets it
// park again costs no timer operation, where stopping the timer on resume
// and setting it on park cost two per message and direction.
func (h *half) armIdleLocked(now time.Time, left time.Duration) {
	at := now.Add(left)
	switch {
	case h.timer == nil:
		h.timer = time.AfterFunc(left, h.idleFired)
	case now.Before(h.timerAt) && !h.timerAt.After(at):
		return
	default:
		h.timer.Reset(left)
	}
	h.timerAt = at
}

// stopIdleLocked stops the idle timer.
func (h *half) stopIdleLocked() {
	if h.timer != nil {
		h.timer.Stop()
	}
	h.timerAt = time.Time{}
}

// idleFired is the idle timer's callback. Traffic since the timer was set
// (see armIdleLocked) moves it on; otherwise the timeout is due, and the
// half resumes to end on it (loop).
func (h *half) idleFired() {
	r := h.r
	r.mu.Lock()
	h.timerAt = time.Time{}
	if h.parked {
		if t := r.timeout(); t > 0 {
			if left := t - r.quiet(); left > 0 {
				h.armIdleLocked(time.Now(), left)
				r.mu.Unlock()
				return
			}
		}
		h.idleDue = true
	}
	r.mu.Unlock()
	h.unpark()
}

// deadlineArm remembers when a deadline was last pushed out, and by what.
// Moving a deadline costs a timer update: each is pushed out at most a few
// times per timeout period, and when the limit in force changes.
type deadlineArm struct {
	at   time.Time
	span time.Duration
}

// forget records that the deadline in force is unknown (someone else
// moved it, or it has passed): the next armRead sets or clears it.
func (a *deadlineArm) forget() { *a = deadlineArm{span: -1} }

// due reports whether the deadline should be pushed out to now+t, and
// records that it is.
func (a *deadlineArm) due(now time.Time, t time.Duration) bool {
	if t == a.span && now.Sub(a.at) <= t/8 {
		return false
	}
	a.at, a.span = now, t
	return true
}
