package splice

import "time"

// Receive batching. A direction that moves bytes as fast as its source can
// send them is woken for every few tens of KiB that arrive: on loopback or a
// fast LAN that is tens of thousands of wake-ups a second per connection,
// and each one that crosses CPUs costs an inter-processor interrupt, paid
// on the sender's CPU (in a virtual machine, an exit too). A streaming
// direction therefore raises SO_RCVLOWAT on its source, so that the kernel
// wakes it only once batchLowat bytes are queued (or at EOF, an error or
// the peer's close), and bounds how long fewer bytes may wait by a
// batchFlush read deadline. Once flushes have found nothing for about
// 10 ms the stream has paused: the low-water mark goes back to 1 and every
// byte wakes the direction at once again, as latency-sensitive traffic
// needs. Parked directions never batch (the Parker's epoll honours
// SO_RCVLOWAT too).
const (
	// batchLowat is SO_RCVLOWAT while batching (Linux caps it at half the
	// socket's receive buffer limit).
	batchLowat = 512 << 10
	// batchEnter bytes moved within batchWindow start batching: about
	// 50 MB/s.
	batchEnter  = 512 << 10
	batchWindow = 10 * time.Millisecond
	// batchFlush is the longest queued bytes wait while batching.
	batchFlush = time.Millisecond
	// batchQuiet flushes in a row that find nothing (about 10 ms without
	// a byte) end batching. Fewer would end it in the gaps of a
	// request-response stream: a download that asks for its next chunk
	// only once it has the last one waits a round trip through the
	// client, several milliseconds when the client's CPU is busy, and
	// each restart relays up to batchEnter bytes unbatched.
	batchQuiet = 10
)

// pace is told how many bytes the last drain moved, and starts or stops
// batching.
func (h *half) pace(moved int64) {
	if h.batching {
		if moved > 0 {
			h.emptyFlushes = 0
		} else if h.emptyFlushes++; h.emptyFlushes >= batchQuiet {
			h.setBatching(false)
		}
		return
	}
	if moved == 0 {
		return
	}
	now := time.Now()
	if now.Sub(h.rateStart) > batchWindow {
		h.rateStart, h.rateBytes = now, 0
	}
	h.rateBytes += moved
	if h.rateBytes >= batchEnter {
		h.setBatching(true)
	}
}

// setBatching sets the source's SO_RCVLOWAT. If raising it fails, the
// direction does not batch; if lowering it fails, the socket is closed or
// broken and the next read says so.
func (h *half) setBatching(on bool) {
	if on && h.src.kernel != nil {
		// A kernel TLS socket reports readable per whole record, and how
		// SO_RCVLOWAT counts there is the TLS layer's business: untested,
		// so not relied on.
		return
	}
	lowat := 1
	if on {
		lowat = batchLowat
	}
	if err := setRcvLowat(h.src.sock, lowat); err != nil && on {
		return
	}
	h.batching = on
	h.drained = shortRead{off: on}
	if h.src.tr != nil {
		h.src.tr.drained = shortRead{off: on}
	}
	h.rateStart, h.rateBytes, h.emptyFlushes = time.Time{}, 0, 0
	// The read deadline in force was set for the other mode.
	h.readArm.forget()
}

// waitBatch is wait while batching: until batchLowat bytes are queued, the
// source ends, or batchFlush passes, whichever is first. The next drain
// finds out which.
func (h *half) waitBatch() (res halfResult, done bool) {
	h.src.conn.SetReadDeadline(time.Now().Add(batchFlush))
	h.readArm.forget()
	if err := h.drained.sock.wait(h.src.sock); err != nil && !isTimeout(err) {
		return stopped(h.srcPeer, err), true
	}
	return halfResult{}, false
}
