package splice

import (
	"context"
	"errors"
	"net"
	"time"
)

// Moving a relay to another process (a binary upgrade): Freeze stops both
// directions where nothing is in flight (every byte read has been written,
// no pipe or buffer holds any), so that whatever the peers send meanwhile
// waits in the sockets' queues; the caller passes the two sockets on, then
// either Releases the relay here or Thaws it if the move failed.

// HandedOver: the relay was moved to another process (Handle.Release).
const HandedOver Reason = "handed_over"

// ErrNotMovable is returned by Freeze for a relay that cannot move: one
// side is a *tls.Conn (its record layer lives in this process), a
// direction ended other than cleanly (or both ended), the relay is
// closing, or another Freeze is under way.
var ErrNotMovable = errors.New("splice: relay cannot move")

// Handle is a running relay, as Start returned it.
type Handle struct{ r *relay }

// Frozen is a relay stopped by Freeze: its connections, open and idle in
// this process, and the bytes it has moved each way. ClientEnded (or
// BackendEnded) says how that peer's stream ended if it has, in which
// case the other side was half-closed: the relay runs on in one
// direction (see Options.ClientEnded).
type Frozen struct {
	Client, Backend           net.Conn
	In, Out                   int64
	ClientEnded, BackendEnded End
}

// freezePoke is how often Freeze wakes a direction waiting on the
// netpoller, in case it armed its read deadline after the last poke.
const freezePoke = 20 * time.Millisecond

// Freeze stops both directions at their next point with nothing in
// flight, and returns the connections. A direction stuck in a write (its
// peer reads nothing) cannot stop: when ctx ends first, the relay runs on
// and Freeze returns ctx's error. After a nil error the caller must call
// Release or Thaw.
func (h *Handle) Freeze(ctx context.Context) (*Frozen, error) {
	r := h.r
	r.mu.Lock()
	// A relay may move with one direction finished cleanly (its source
	// ended, its destination got our FIN): the next process runs the
	// other. A direction that finishes sends its FIN (finSent) a moment
	// before it records its result: wait that moment out.
	for r.finishing() && len(r.results) == 0 && !r.closed {
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
		r.mu.Lock()
	}
	oneEnded := len(r.results) == 1 && r.results[0].eof() && r.halfDone.Load()
	if r.closed || r.freezing.Load() || (len(r.results) > 0 && !oneEnded) || (r.halfDone.Load() && !oneEnded) ||
		!r.ends[clientPeer].movable() || !r.ends[backendPeer].movable() {
		r.mu.Unlock()
		return nil, ErrNotMovable
	}
	r.freezeDone = make(chan struct{})
	r.freezeFailed = false
	r.freezing.Store(true)
	var unpark []*half
	for _, hf := range r.halves {
		if hf.parked {
			hf.parked = false
			unpark = append(unpark, hf)
			r.frozeLocked(hf)
		}
	}
	done := r.freezeDone
	fr := &Frozen{Client: r.ends[clientPeer].conn, Backend: r.ends[backendPeer].conn}
	if oneEnded {
		if res := r.results[0]; res.peer == clientPeer {
			fr.ClientEnded = res.end
		} else {
			fr.BackendEnded = res.end
		}
	}
	r.mu.Unlock()
	for _, hf := range unpark {
		r.parker.remove(hf, false)
	}

	poke := time.NewTicker(freezePoke)
	defer poke.Stop()
	for {
		// Wake directions waiting on the netpoller: the deadline passes
		// and they come round to a point where they stop.
		for _, hf := range r.halves {
			hf.src.conn.SetReadDeadline(time.Now())
		}
		select {
		case <-done:
			r.mu.Lock()
			failed := r.freezeFailed
			r.mu.Unlock()
			if failed {
				h.Thaw()
				return nil, ErrNotMovable
			}
			fr.In, fr.Out = r.counts.In.Load(), r.counts.Out.Load()
			return fr, nil
		case <-ctx.Done():
			h.Thaw()
			return nil, ctx.Err()
		case <-poke.C:
		}
	}
}

// Thaw resumes a relay Freeze stopped (or was stopping). The time it
// spent frozen does not count as idle, and a cancellation that came
// meanwhile takes effect now.
func (h *Handle) Thaw() {
	r := h.r
	r.touch()
	r.mu.Lock()
	r.freezing.Store(false)
	cancel := r.cancelPending
	r.cancelPending = false
	var resume []*half
	for _, hf := range r.halves {
		if hf.frozen {
			hf.frozen = false
			hf.readArm.forget() // the pokes moved the deadline
			resume = append(resume, hf)
		}
	}
	r.frozen = 0
	r.mu.Unlock()
	for _, hf := range resume {
		r.start(hf)
	}
	if cancel {
		r.cancel()
	}
}

// Release ends a frozen relay here once its connections live on
// elsewhere: it closes this process's descriptors, which does not end the
// connections while another process holds them (no FIN, no RST), and
// reports Stats with Reason HandedOver.
func (h *Handle) Release() {
	r := h.r
	r.once.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		// The sockets live on in another process: see Parker.drop.
		r.dropRegistrations()
		r.ends[clientPeer].conn.Close()
		r.ends[backendPeer].conn.Close()
	})
	r.stopCtx()
	r.done(Stats{BytesIn: r.counts.In.Load(), BytesOut: r.counts.Out.Load(), Reason: HandedOver,
		ClientEnd: EndCut, BackendEnd: EndCut}, nil)
}

// movable reports whether the endpoint is a socket another process can
// take as it is: plain, or with its TLS record layer in the kernel.
func (e *endpoint) movable() bool { return e.raw }

// freezeAsked reports, cheaply, whether a Freeze is waiting: a direction
// moving bytes stops after its current write.
func (r *relay) freezeAsked() bool { return r.freezing.Load() }

// frozeLocked records that hf stopped for a Freeze; r.mu is held.
func (r *relay) frozeLocked(hf *half) {
	hf.frozen = true
	hf.stopIdleLocked()
	r.frozen++
	if r.frozen == r.live() {
		close(r.freezeDone)
	}
}

// finishing reports whether a direction has begun to finish cleanly.
func (r *relay) finishing() bool {
	return r.ends[clientPeer].finSent.Load() || r.ends[backendPeer].finSent.Load()
}

// live is how many directions have not finished; r.mu is held.
func (r *relay) live() int { return len(r.halves) - len(r.results) }

// stopForFreeze is called by a direction at a point with nothing in
// flight: if a Freeze waits, the direction stops there (its goroutine
// returns) and reports true.
func (h *half) stopForFreeze() bool {
	r := h.r
	if !r.freezeAsked() {
		return false
	}
	if h.batching {
		// The next process's relay starts without batching: a raised
		// SO_RCVLOWAT would hold its first bytes back.
		h.setBatching(false)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.freezing.Load() || r.closed {
		return false
	}
	r.frozeLocked(h)
	return true
}

// freezeFailedLocked tells a waiting Freeze that a direction ended
// instead of stopping; r.mu is held.
func (r *relay) freezeFailedLocked() {
	if r.freezing.Load() && !r.freezeFailed {
		r.freezeFailed = true
		select {
		case <-r.freezeDone:
		default:
			close(r.freezeDone)
		}
	}
}
