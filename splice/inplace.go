package splice

import (
	"crypto/tls"
	"time"
)

// inPlace moves a copying direction's bytes and waits for more within one
// RawConn.Read of its source. RawConn.Read begins by forgetting the
// readiness Go's netpoller has recorded for the socket, so a direction
// that returned from it after every message had to ask the socket again
// before it could sleep (waitReadable's ppoll): a system call per message
// and direction, a tenth of what a small relayed request costs (S1).
// Inside one call the netpoller's readiness holds from one wait to the
// next, and the source's TCP_INQ tells a read that took everything from
// one that did not (see inqReader): with nothing queued and no FIN
// pending, the callback goes straight back to the wait.
//
// While the callback runs, the source's Close waits for it to return. So
// it never waits on the backend: a socket destination takes what it can at
// once, and the rest is written outside the callback. It may wait on the
// client, a TLS destination, because the relay always closes the client
// first (closeConns), which ends that wait.
type inPlace struct {
	h   *half
	fn  func(uintptr) bool
	inq inqReader  // a socket source's reads
	w   sockWriter // a socket destination's writes

	// What the last callback left for the caller.
	res    halfResult
	done   bool    // the direction ended with res
	park   bool    // asked to park at once (parkNow)
	bufp   *[]byte // borrowed buffer holding rest
	rest   []byte  // bytes read and not yet written to a socket destination
	noPark bool    // the direction could not park: it waits here instead
	paced  int64   // the direction's count when pace was last told
}

// canInPlace reports whether the direction can move its bytes in place
// while it copies (see inPlaceNow): its source is a socket read without
// waiting (a socket, or a *tls.Conn over a Transport) and its destination
// a socket or the client's *tls.Conn. Kernel TLS ends, whose control
// records need their own handling, keep the general loop. A direction that parks turns TCP_INQ
// on and trusts it (see inqReader).
func (h *half) canInPlace() bool {
	if h.src.sock == nil || h.src.kernel != nil || h.dst.kernel != nil {
		return false
	}
	if !h.src.raw && h.src.tr == nil {
		return false
	}
	if !h.dst.raw {
		if _, ok := h.dst.conn.(*tls.Conn); !ok || h.dstPeer != clientPeer {
			return false
		}
	}
	return h.r.parker == nil || enableInq(h.src.sock)
}

// inPlaceNow reports whether the direction moves its bytes in place now:
// not while it splices or batches.
func (h *half) inPlaceNow() bool { return h.inPlaceOK && !h.splice && !h.batching }

// moveInPlace is drain and wait in one (see inPlace). Like wait, it
// reports park=true once the source has been quiet for ParkAfter, and it
// reports done=false with no park when the caller should look around
// (freeze, batching) and call again.
func (h *half) moveInPlace() (res halfResult, done, park bool) {
	m := h.inPlace
	if m == nil {
		m = h.newInPlace()
		h.inPlace = m
	}
	m.res, m.done, m.park = halfResult{}, false, false
	m.paced = h.counter.Load()
	// RawConn.Read is about to forget the socket's readiness: what the
	// last read left (nothing, it said) may have changed since.
	m.inq.empty = false
	// The callback arms the read deadline before each wait, so with none
	// in force there is nothing to do first. One that may have passed
	// must be moved, or the read fails at once; a direction that parks as
	// soon as its source is empty clears it instead, so that a message of
	// sparse traffic costs no timer.
	switch {
	case h.readArm.span == 0:
	case h.readArm.span < 0 && m.parkNow():
		h.armRead(0)
	case !h.armWait():
		return halfResult{}, false, false
	}
	err := h.src.sock.Read(m.fn)
	if m.rest != nil {
		w, werr := h.write(m.rest)
		h.counter.Add(int64(w))
		h.r.buffers.Put(m.bufp)
		m.rest, m.bufp = nil, nil
		if werr != nil {
			return h.writeFailed(werr), true, false
		}
	}
	if c := h.counter.Load(); c > m.paced {
		h.pace(c - m.paced)
	}
	switch {
	case m.done:
		return m.res, true, false
	case m.park:
		return halfResult{}, false, true
	case err == nil:
		return halfResult{}, false, false
	case !isTimeout(err):
		return stopped(h.srcPeer, err), true, false
	}
	if res, done := h.timedOut(); done {
		return res, true, false
	}
	return halfResult{}, false, h.r.parker != nil
}

// newInPlace returns fresh in-place state for h, one a parked direction
// left with the Parker if there is one.
func (h *half) newInPlace() *inPlace {
	var m *inPlace
	if p := h.r.parker; p != nil {
		m, _ = p.spare.Get().(*inPlace)
	}
	if m == nil {
		m = new(inPlace)
		m.fn = m.step
	}
	// All but the callbacks, which are bound to m itself, and the
	// writer, which resets itself for each write.
	*m = inPlace{h: h, fn: m.fn, w: m.w}
	m.inq.trust = h.r.parker != nil
	return m
}

// dropInPlace gives m, the in-place state of a direction that has just
// parked, to the Parker for the next that resumes. Once parked the half
// is the next goroutine's, which makes its own: m is this one's alone.
func (h *half) dropInPlace(m *inPlace) {
	if p := h.r.parker; p != nil && m != nil {
		*m = inPlace{fn: m.fn, w: m.w} // nothing of h's kept alive
		p.spare.Put(m)
	}
}

// step is the RawConn.Read callback: it reads fd and writes what it read
// until the source has nothing queued, then returns false to wait, or
// true with what the caller must handle.
func (m *inPlace) step(fd uintptr) bool {
	h := m.h
	bufp := h.r.buffers.Get()
	buf := *bufp
	for {
		if h.r.closing.Load() {
			// Its Close waits for this callback: let the next read
			// find the socket closed.
			h.r.buffers.Put(bufp)
			return true
		}
		n, rerr := m.read(int(fd), buf)
		if n > 0 {
			h.moving(time.Now())
			w, werr := m.write(buf[:n])
			h.counter.Add(int64(w))
			switch {
			case werr != nil:
				h.r.buffers.Put(bufp)
				m.res, m.done = h.writeFailed(werr), true
				return true
			case w < n:
				m.bufp, m.rest = bufp, buf[w:n]
				return true
			case h.r.freezeAsked():
				h.r.buffers.Put(bufp)
				return true
			}
		}
		res, more, done := h.readEnded(rerr)
		if more {
			continue
		}
		h.r.buffers.Put(bufp)
		if done {
			m.res, m.done = res, true
			return true
		}
		// Nothing queued. Back to the caller for what it must see to
		// (a freeze, batching to start, a direction that may park at
		// once, a deadline that must move), else wait here.
		if h.r.freezeAsked() {
			return true
		}
		if c := h.counter.Load(); c > m.paced {
			h.pace(c - m.paced)
			if m.paced = c; h.batching {
				return true
			}
		}
		if m.parkNow() {
			m.park = true
			return true
		}
		if !h.armWait() {
			return true
		}
		return false // Go's netpoller calls step again once fd is readable
	}
}

// parkNow is half.parkNow, unless parking failed once already.
func (m *inPlace) parkNow() bool { return !m.noPark && m.h.parkNow() }

// read reads the source's descriptor fd (the callback's: RawConn.Read
// holds it), through crypto/tls for a TLS source.
func (m *inPlace) read(fd int, p []byte) (int, error) {
	h := m.h
	if h.src.raw {
		return m.inq.read(fd, p)
	}
	tr := h.src.tr
	tr.in, tr.fd = &m.inq, fd
	n, err := h.src.conn.Read(p)
	tr.in = nil
	return n, err
}

// write writes p to the destination: a socket without waiting (it may
// take less than p, perhaps nothing), the client's TLS conn as any write.
func (m *inPlace) write(p []byte) (int, error) {
	h := m.h
	if h.dst.raw {
		return m.w.write(h.dst.sock, p, false)
	}
	return h.dst.conn.Write(p)
}
