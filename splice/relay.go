// Package splice relays bytes between two established connections: both
// directions at once, half-close propagated each way, an idle timeout that
// counts traffic in either direction, and byte counters.
//
// It knows nothing about routes, TLS configuration or TOML. Callers hand it
// two connections and it owns them from then on: Relay closes both before it
// returns.
package splice

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults used when the corresponding Options field is zero.
const (
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultHalfCloseTimeout = 30 * time.Second
)

// DefaultParkAfter is how long a relay direction waits for its source on a
// goroutine before it parks (when Options.Parker is set).
const DefaultParkAfter = time.Second

// Options tune one relay. The zero value is usable.
type Options struct {
	// IdleTimeout closes the relay when no byte has moved in either direction
	// for this long. Zero means DefaultIdleTimeout; negative disables it.
	IdleTimeout time.Duration

	// HalfCloseTimeout replaces IdleTimeout, when shorter, once one
	// direction has finished (its source sent EOF and the destination was
	// half-closed), so a peer that never closes its side cannot hold the
	// connection forever, while a long response after a half-closed request
	// keeps flowing as long as it moves. Zero means DefaultHalfCloseTimeout; negative disables it.
	HalfCloseTimeout time.Duration

	// Buffers lends the copy buffers. Nil means a package default pool of
	// DefaultBufferSize buffers.
	Buffers *BufferPool

	// Pipes lends the pipes of the splice(2) path. Nil means a package
	// default pool.
	Pipes *PipePool

	// Parker, if set, takes over directions that have been idle for
	// ParkAfter, so that an idle connection holds no goroutine. A
	// direction that has not moved a byte yet parks as soon as its source
	// has nothing queued (a socket source, from the start), so a burst of
	// new connections does not hold goroutines either; nor does one
	// resumed after 3/4 of ParkAfter or more parked (sparse
	// traffic, see half.parkNow). Nil: idle directions wait on their own
	// goroutines.
	Parker *Parker
	// ParkAfter is how long a direction waits on its goroutine before it
	// parks. Zero means DefaultParkAfter.
	ParkAfter time.Duration
	// sparseAfter overrides 3/4 of ParkAfter (see half.parkNow); for tests.
	sparseAfter time.Duration

	// NoSplice makes directions between two sockets copy through a buffer
	// instead of splicing; for comparisons and tests.
	NoSplice bool

	// Counters, if set, receives the byte counts as bytes move, so that
	// the caller can read them while the relay lives (metrics); nil: the
	// relay counts on its own. Stats reports the same totals at the end.
	Counters *Counters

	// ClientEnded (or BackendEnded) starts a relay taken over from
	// another process (see Handle.Freeze) whose client (backend) had
	// already ended its stream, this way, and whose other side was
	// half-closed: only the other direction runs. At most one may be set.
	ClientEnded, BackendEnded End
}

// Counters are a relay's byte counts, updated as bytes are written.
type Counters struct {
	In  atomic.Int64 // client → backend
	Out atomic.Int64 // backend → client
}

func (o *Options) idleTimeout() time.Duration {
	switch {
	case o.IdleTimeout == 0:
		return DefaultIdleTimeout
	case o.IdleTimeout < 0:
		return 0
	}
	return o.IdleTimeout
}

func (o *Options) halfCloseTimeout() time.Duration {
	switch {
	case o.HalfCloseTimeout == 0:
		return DefaultHalfCloseTimeout
	case o.HalfCloseTimeout < 0:
		return 0
	}
	return o.HalfCloseTimeout
}

// Reason says why a relay ended. It is meant for access logs.
type Reason string

// The reasons a relay can end with.
const (
	// ClientClosed: both directions finished and the client finished first.
	ClientClosed Reason = "client_closed"
	// BackendClosed: both directions finished and the backend finished first.
	BackendClosed Reason = "backend_closed"
	// ClientTruncated: both directions finished, and the client finished
	// first, over TLS without close_notify (see EndTruncated).
	ClientTruncated Reason = "client_truncated"
	// IdleTimeout: nothing moved for IdleTimeout (or HalfCloseTimeout).
	IdleTimeout Reason = "idle_timeout"
	// ClientReset and BackendReset: that peer reset the connection.
	ClientReset  Reason = "client_reset"
	BackendReset Reason = "backend_reset"
	// ClientError: reading from or writing to the client failed otherwise.
	ClientError Reason = "client_error"
	// BackendError: reading from or writing to the backend failed otherwise.
	BackendError Reason = "backend_error"
	// Canceled: the context was cancelled (for example at the end of a
	// graceful shutdown).
	Canceled Reason = "canceled"
)

// Aborted reports whether a relay that ended for this reason aborted both
// connections (Abort) rather than closing them cleanly.
func (r Reason) Aborted() bool {
	switch r {
	case ClientClosed, BackendClosed, ClientTruncated:
		return false
	}
	return true
}

// Stats reports what one relay moved and why it ended.
type Stats struct {
	// BytesIn counts bytes read from the client and written to the backend.
	BytesIn int64
	// BytesOut counts bytes read from the backend and written to the client.
	BytesOut int64
	// Reason is why the relay ended.
	Reason Reason
	// ClientEnd and BackendEnd say how each peer's stream ended.
	ClientEnd, BackendEnd End
}

// Relay copies client→backend and backend→client until both directions are
// done, then closes both connections. When one side sends EOF, the other side
// is half-closed (CloseWrite; for a *tls.Conn that is close_notify followed
// by a TCP FIN) and the opposite direction goes on. An abort stays an abort:
// a reset or error on either side, a timeout and a cancellation of ctx
// abort both connections at once (see Abort), so neither peer can take a
// cut stream for a complete one.
//
// A TLS client whose stream ends without close_notify has truncated it by
// TLS's rules, but browsers and HTTP clients often end an ordinary exchange
// that way; the backend sees a FIN, as for close_notify, so that it can
// still finish its answer, and Stats says EndTruncated. Protocols that
// care (WebSocket, HTTP) frame their messages and tell a cut message
// themselves.
//
// Each direction picks its path from the concrete connections: between two
// sockets (*net.TCPConn, *net.UnixConn) it splices through a pipe borrowed
// while bytes move; otherwise it copies through a buffer borrowed while
// bytes move. A *tls.Conn whose transport is a Transport is read without
// waiting, so that it too waits with nothing borrowed; over any other
// transport, and for other connection types, a direction waits in a
// blocking read that holds its buffer. A direction that streams raises
// SO_RCVLOWAT on its source so that it is woken per half MiB rather than
// per segment, never letting bytes wait more than a millisecond (see
// batch.go).
//
// The returned error is nil for ordinary endings (EOF, resets and the like,
// which are what clients do every day) and for idle timeouts; it carries the
// first unexpected I/O error otherwise. Stats.Reason is always set.
func Relay(ctx context.Context, client, backend net.Conn, opts Options) (Stats, error) {
	type result struct {
		st  Stats
		err error
	}
	done := make(chan result, 1)
	Start(ctx, client, backend, opts, func(st Stats, err error) { done <- result{st, err} })
	r := <-done
	return r.st, r.err
}

// Start is Relay without waiting: it starts the two directions and returns
// at once; done is called, on the goroutine that finished last, after both
// directions have ended and both connections are closed. With opts.Parker
// set, an idle connection holds no goroutine at all (see Options.Parker).
func Start(ctx context.Context, client, backend net.Conn, opts Options, done func(Stats, error)) *Handle {
	r := &relay{
		idle:      opts.idleTimeout(),
		linger:    opts.halfCloseTimeout(),
		buffers:   opts.Buffers,
		pipes:     opts.Pipes,
		parker:    opts.Parker,
		parkAfter: opts.ParkAfter,
		sparse:    opts.sparseAfter,
		counts:    opts.Counters,
		done:      done,
	}
	if r.counts == nil {
		r.counts = new(Counters)
	}
	if r.buffers == nil {
		r.buffers = &defaultBuffers
	}
	if r.pipes == nil {
		r.pipes = &defaultPipes
	}
	if r.parkAfter <= 0 {
		r.parkAfter = DefaultParkAfter
	}
	if r.sparse <= 0 {
		r.sparse = r.parkAfter * 3 / 4
	}
	r.ends[clientPeer].init(client)
	r.ends[backendPeer].init(backend)
	r.touch()
	// Deadlines from earlier phases (handshake, peek) must not leak into the
	// relay; the directions set their own when a timeout is in force.
	client.SetDeadline(time.Time{})
	backend.SetDeadline(time.Time{})
	for dir := range r.halves {
		r.halves[dir] = newHalf(r, direction(dir), opts.NoSplice)
	}
	r.stopCtx = context.AfterFunc(ctx, r.cancel)
	ended := r.preEnded(opts)
	for _, h := range r.halves {
		if h == ended {
			continue
		}
		// A socket has nothing buffered above it: its direction can park
		// before it has run at all, and the Parker starts it as soon as
		// the socket has bytes (level-triggered: including bytes already
		// queued). Other sources must first be read until they would block.
		if h.src.raw && h.parkNow() {
			if parked, _ := h.park(); parked {
				continue
			}
		}
		r.start(h)
	}
	return &Handle{r}
}

// start runs h on a goroutine: a runner of the Parker's if the relay
// parks, else its own.
func (r *relay) start(h *half) {
	if r.parker != nil {
		r.parker.runners.run(h)
		return
	}
	go h.copyHalf()
}

// preEnded records the direction whose source opts says had already
// ended (a relay taken over from another process), and returns its half.
func (r *relay) preEnded(opts Options) *half {
	var h *half
	var end End
	switch {
	case opts.ClientEnded.clean():
		h, end = r.halves[toBackend], opts.ClientEnded
	case opts.BackendEnded.clean():
		h, end = r.halves[toClient], opts.BackendEnded
	default:
		return nil
	}
	h.src.eofSeen.Store(true)
	h.dst.finSent.Store(true)
	r.halfDone.Store(true)
	r.results = append(r.results, halfResult{end: end, peer: h.srcPeer, rank: r.stopped.Add(1)})
	return h
}

type direction uint8

const (
	toBackend direction = iota // client → backend
	toClient                   // backend → client
)

// peer names one end of the relay.
type peer uint8

const (
	clientPeer peer = iota
	backendPeer
)

// halfResult is what one direction reports when it stops.
type halfResult struct {
	end  End   // how peer's stream ended; "" when it did not (a timeout, our close)
	idle bool  // stopped by the idle or half-close timeout
	err  error // unexpected error; nil for EOF and benign endings
	peer peer  // the end whose read or write stopped the copy
	rank int32 // 1 for the direction whose copy stopped first, 2 for the other
}

// stopped returns the result of a read or write on p that failed with
// err.
func stopped(p peer, err error) halfResult {
	return halfResult{end: endOf(err), idle: isTimeout(err), err: benignOrNil(err), peer: p}
}

// eof reports whether the source ended its stream: the direction ends
// with a half-close, not an abort.
func (res halfResult) eof() bool { return res.end.clean() }

// failed reports whether the direction ended on a timeout, a reset or an
// error, rather than with EOF or because the relay closed its conns.
func (res halfResult) failed() bool {
	return res.idle || res.err != nil || (res.end != "" && !res.eof())
}

type relay struct {
	ends         [2]endpoint // by peer
	halves       [2]*half    // by direction
	idle, linger time.Duration
	parkAfter    time.Duration
	sparse       time.Duration // see half.parkNow
	buffers      *BufferPool
	pipes        *PipePool
	parker       *Parker
	done         func(Stats, error)
	stopCtx      func() bool

	counts   *Counters
	last     atomic.Int64 // unix nanos of the last byte moved in either direction
	halfDone atomic.Bool  // one direction has finished with EOF
	canceled atomic.Bool
	closing  atomic.Bool  // closeConns has begun (see inPlace.step)
	stopped  atomic.Int32 // how many directions have stopped; ranks halfResults
	once     sync.Once

	mu      sync.Mutex // guards closed, results and each half's parked state
	closed  bool
	results []halfResult

	// A Freeze in progress (see freeze.go): freezing is also read without
	// the lock; the rest is guarded by mu.
	freezing      atomic.Bool
	frozen        int // directions stopped for it
	freezeDone    chan struct{}
	freezeFailed  bool
	cancelPending bool // ctx was cancelled while frozen (see cancel)
}

func (r *relay) touch() { r.touchAt(time.Now()) }

func (r *relay) touchAt(now time.Time) { r.last.Store(now.UnixNano()) }

// quiet is how long nothing has moved in either direction.
func (r *relay) quiet() time.Duration { return time.Since(time.Unix(0, r.last.Load())) }

func (r *relay) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// closeBoth closes both connections cleanly, once both directions ended
// with EOF.
func (r *relay) closeBoth() { r.once.Do(func() { r.closeConns(net.Conn.Close) }) }

// abortBoth aborts both connections (see Abort).
func (r *relay) abortBoth() { r.once.Do(func() { r.closeConns(Abort) }) }

// cancel aborts both conns because ctx is done. The relay counts as
// Canceled only if the cancellation is what tore it down: a relay already
// closing after an error keeps that error and its reason.
func (r *relay) cancel() {
	r.mu.Lock()
	if r.freezing.Load() {
		// Frozen for a move, its sockets may be another process's by
		// now: aborting them here would reset that process's
		// connection. Thaw cancels, if the relay stays.
		r.cancelPending = true
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.once.Do(func() {
		r.canceled.Store(true)
		r.closeConns(Abort)
	})
}

// closeConns closes both connections with closeFn and resumes parked
// directions, which then find their sockets closed and stop. The client
// goes first: closing it ends any write to it, which a direction moving
// its bytes in place may be waiting on while it holds the backend's
// socket, whose Close would wait for that (see inPlace).
func (r *relay) closeConns(closeFn func(net.Conn) error) {
	r.closing.Store(true)
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	closeFn(r.ends[clientPeer].conn)
	closeFn(r.ends[backendPeer].conn)
	for _, h := range r.halves {
		h.unpark()
	}
}

// timeout is the inactivity limit in force: the idle timeout, or the
// half-close timeout once one direction has finished.
func (r *relay) timeout() time.Duration {
	if r.halfDone.Load() && r.linger > 0 && (r.idle == 0 || r.linger < r.idle) {
		return r.linger
	}
	return r.idle
}

// finish records the end of one direction, propagates it to the other, and
// completes the relay when both have ended.
func (r *relay) finish(h *half, res halfResult) {
	// Rank the result before closeWrite or closeBoth below can wake the
	// other direction; the order of the calls alone cannot tell who was
	// first.
	res.rank = r.stopped.Add(1)
	// An end found after the relay began closing is no news: the read may
	// have met a reset whose error the other direction took, on a socket
	// closed before resetSeen could ask its state. Half-closing dst then
	// would show its peer a clean end ahead of the abort's RST.
	if res.eof() && !r.isClosed() {
		// Clean EOF from the source: tell the destination we are done
		// writing. From now on the remaining direction, which reads from
		// dst, runs under the half-close timeout; shorten the deadline it
		// may be waiting on, or wake it if it is parked.
		h.src.eofSeen.Store(true) // before the FIN below can cause anything
		h.dst.finSent.Store(true)
		// A peer that ended its own stream cleanly and then closed its
		// socket (an HTTP client once it has its answer, say) cannot take
		// our end any more: the half-close fails, and nothing is lost.
		if err := closeWrite(h.dst.conn); err != nil && !h.dst.eofSeen.Load() {
			rank := res.rank
			res = stopped(h.dstPeer, err)
			res.rank = rank
			r.abortBoth()
		} else {
			r.halfDone.Store(true)
			if t := r.timeout(); t > 0 {
				h.dst.conn.SetReadDeadline(time.Now().Add(t))
			}
			r.halves[1-h.dir].unpark()
		}
	} else {
		r.abortBoth()
	}
	r.mu.Lock()
	h.stopIdleLocked() // armed still if bytes last resumed the half
	r.results = append(r.results, res)
	last := len(r.results) == 2
	r.freezeFailedLocked()
	r.mu.Unlock()
	if last {
		r.complete()
	}
}

// dropRegistrations ends both directions' entries in the Parker (see
// Parker.drop), once neither runs here any more.
func (r *relay) dropRegistrations() {
	if r.parker == nil {
		return
	}
	for _, h := range r.halves {
		r.parker.drop(h)
	}
}

// complete reports the relay's end once both directions have stopped.
func (r *relay) complete() {
	r.dropRegistrations()
	r.closeBoth()
	r.stopCtx()
	first, second := r.results[0], r.results[1]
	if second.rank < first.rank {
		first, second = second, first
	}
	st := Stats{BytesIn: r.counts.In.Load(), BytesOut: r.counts.Out.Load(), Reason: r.reason(first, second),
		ClientEnd: EndCut, BackendEnd: EndCut}
	// The first word on a peer is the truth about it: after a reset, the
	// other direction's failure on the same peer is only its echo.
	for _, res := range []halfResult{second, first} {
		if res.end == "" {
			continue
		}
		if res.peer == clientPeer {
			st.ClientEnd = res.end
		} else {
			st.BackendEnd = res.end
		}
	}
	var err error
	if st.Reason != Canceled {
		err = first.err
		if err == nil {
			err = second.err
		}
	}
	r.done(st, err)
}

// reason derives why the relay ended from the two half results, in the order
// their copies stopped (see halfResult.rank).
func (r *relay) reason(first, second halfResult) Reason {
	if first.eof() && second.failed() {
		// One side closed cleanly, then the other direction failed: the
		// failure is the news.
		first = second
	}
	client := first.peer == clientPeer
	switch {
	case r.canceled.Load():
		return Canceled
	case first.idle:
		return IdleTimeout
	case first.end == EndReset && client:
		return ClientReset
	case first.end == EndReset:
		return BackendReset
	case first.err != nil && client:
		return ClientError
	case first.err != nil:
		return BackendError
	case first.end == EndTruncated && client:
		return ClientTruncated
	case client:
		return ClientClosed
	default:
		return BackendClosed
	}
}

type closeWriter interface{ CloseWrite() error }

var (
	_ closeWriter = (*net.TCPConn)(nil)
	_ closeWriter = (*net.UnixConn)(nil)
	_ closeWriter = (*tls.Conn)(nil)
)

// closeWrite half-closes c. For a *tls.Conn, CloseWrite only sends
// close_notify; the TCP FIN needs CloseWrite on the connection beneath it,
// which must itself implement CloseWrite (wrappers that drop it turn
// half-close into nothing, so such a conn is fully closed instead).
func closeWrite(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		c = beneath(tc.NetConn(), func(c net.Conn) bool { _, ok := c.(closeWriter); return ok })
	}
	if cw, ok := c.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
