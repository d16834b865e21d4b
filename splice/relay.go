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
	"io"
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

	// Buffers supplies the copy buffers. Nil means a package default pool of
	// DefaultBufferSize buffers.
	Buffers *BufferPool
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
	// IdleTimeout: nothing moved for IdleTimeout (or HalfCloseTimeout).
	IdleTimeout Reason = "idle_timeout"
	// ClientError: reading from or writing to the client failed.
	ClientError Reason = "client_error"
	// BackendError: reading from or writing to the backend failed.
	BackendError Reason = "backend_error"
	// Canceled: the context was cancelled (for example at the end of a
	// graceful shutdown).
	Canceled Reason = "canceled"
)

// Stats reports what one relay moved and why it ended.
type Stats struct {
	// BytesIn counts bytes read from the client and written to the backend.
	BytesIn int64
	// BytesOut counts bytes read from the backend and written to the client.
	BytesOut int64
	// Reason is why the relay ended.
	Reason Reason
}

// Relay copies client→backend and backend→client until both directions are
// done, then closes both connections. When one side sends EOF, the other side
// is half-closed (CloseWrite; for a *tls.Conn that is close_notify followed
// by a TCP FIN) and the opposite direction goes on. A real error on either
// side closes both connections at once so the other direction unblocks.
// Cancelling ctx closes both connections.
//
// The returned error is nil for ordinary endings (EOF, resets and the like,
// which are what clients do every day) and for idle timeouts; it carries the
// first unexpected I/O error otherwise. Stats.Reason is always set.
func Relay(ctx context.Context, client, backend net.Conn, opts Options) (Stats, error) {
	r := &relay{
		client:  client,
		backend: backend,
		idle:    opts.idleTimeout(),
		linger:  opts.halfCloseTimeout(),
		pool:    opts.Buffers,
	}
	if r.pool == nil {
		r.pool = &defaultPool
	}
	r.touch()
	// Deadlines from earlier phases (handshake, peek) must not leak into the
	// relay; copyLoop sets its own when a timeout is in force.
	client.SetDeadline(time.Time{})
	backend.SetDeadline(time.Time{})

	stop := context.AfterFunc(ctx, r.cancel)
	defer stop()

	results := make(chan halfResult, 2)
	go r.copyHalf(results, toBackend)
	// The caller's goroutine copies the other direction itself: one
	// goroutine stack less for every connection, and it still shows up in
	// stack dumps as copyHalf, under Relay.
	r.copyHalf(results, toClient)
	first := <-results
	second := <-results
	r.closeBoth()
	if second.rank < first.rank {
		// The direction that stopped first may report last: its own
		// closeWrite or closeBoth is what woke the other one up.
		first, second = second, first
	}

	st := Stats{BytesIn: r.in.Load(), BytesOut: r.out.Load(), Reason: r.reason(first, second)}
	if st.Reason == Canceled {
		return st, nil
	}
	err := first.err
	if err == nil {
		err = second.err
	}
	return st, err
}

type direction int

const (
	toBackend direction = iota // client → backend
	toClient                   // backend → client
)

// peer names one end of the relay.
type peer int

const (
	clientPeer peer = iota
	backendPeer
)

// halfResult is what one copyHalf reports when it stops.
type halfResult struct {
	eof  bool  // the source sent EOF
	idle bool  // stopped by the idle or half-close timeout
	err  error // unexpected error; nil for EOF and benign endings
	peer peer  // the end whose read or write stopped the copy
	rank int32 // 1 for the direction whose copy stopped first, 2 for the other
}

type relay struct {
	client, backend net.Conn
	idle, linger    time.Duration
	pool            *BufferPool

	in, out  atomic.Int64
	last     atomic.Int64 // unix nanos of the last byte moved in either direction
	halfDone atomic.Bool  // one direction has finished with EOF
	canceled atomic.Bool
	stopped  atomic.Int32 // how many copyLoops have returned; ranks halfResults
	once     sync.Once
}

func (r *relay) touch() { r.last.Store(time.Now().UnixNano()) }

func (r *relay) closeBoth() { r.once.Do(r.closeConns) }

// cancel closes both conns because ctx is done. The relay counts as
// Canceled only if the cancellation is what tore it down: a relay already
// closing after an error keeps that error and its reason.
func (r *relay) cancel() {
	r.once.Do(func() {
		r.canceled.Store(true)
		r.closeConns()
	})
}

func (r *relay) closeConns() {
	r.client.Close()
	r.backend.Close()
}

// timeout is the inactivity limit in force: the idle timeout, or the
// half-close timeout once one direction has finished.
func (r *relay) timeout() time.Duration {
	if r.halfDone.Load() && r.linger > 0 && (r.idle == 0 || r.linger < r.idle) {
		return r.linger
	}
	return r.idle
}

// copyHalf copies one direction. It is a named method so that each direction
// shows up by name in goroutine dumps.
func (r *relay) copyHalf(results chan<- halfResult, dir direction) {
	src, dst := r.client, r.backend
	srcPeer, dstPeer, counter := clientPeer, backendPeer, &r.in
	if dir == toClient {
		src, dst = r.backend, r.client
		srcPeer, dstPeer, counter = backendPeer, clientPeer, &r.out
	}
	res := r.copyLoop(src, dst, srcPeer, dstPeer, counter)
	// Rank the result before closeWrite or closeBoth below can wake the
	// other direction; the channel order alone cannot tell who was first.
	res.rank = r.stopped.Add(1)
	if res.eof {
		// Clean EOF from the source: tell the destination we are done
		// writing. From now on the remaining direction, which reads from
		// dst, runs under the half-close timeout; shorten the deadline it
		// may be parked on.
		if err := closeWrite(dst); err != nil {
			res.eof = false
			res.peer = dstPeer
			res.err = benignOrNil(err)
			r.closeBoth()
		} else {
			r.halfDone.Store(true)
			if t := r.timeout(); t > 0 {
				dst.SetReadDeadline(time.Now().Add(t))
			}
		}
	} else {
		r.closeBoth()
	}
	results <- res
}

// copyLoop moves bytes from src to dst until EOF or an error. It refreshes
// read and write deadlines so that the relay ends after the inactivity
// timeout, counting traffic in both directions.
func (r *relay) copyLoop(src, dst net.Conn, srcPeer, dstPeer peer, counter *atomic.Int64) halfResult {
	// Wait with a small buffer; copy with a large one while reads fill
	// the small one, and go back once they turn small again.
	bufp := r.pool.GetIdle()
	defer func() { r.pool.Put(bufp) }()
	idleSize := len(*bufp)
	// Moving a deadline costs a timer update: each is pushed out at most a
	// few times per timeout period, and when the limit in force changes.
	// The write deadline is armed just before a write, not with the read
	// one: bytes that arrive at the end of a long quiet read must still get
	// a whole period to be written.
	var readArm, writeArm deadlineArm
	for {
		if t := r.timeout(); t > 0 {
			if now := time.Now(); readArm.due(now, t) {
				src.SetReadDeadline(now.Add(t))
				if r.timeout() != t {
					// The other direction finished between timeout() and
					// SetReadDeadline: the half-close deadline it set on src
					// may have just been overwritten by the longer idle one.
					continue
				}
			}
		}
		n, rerr := src.Read(*bufp)
		if n > 0 {
			r.touch()
			if t := r.timeout(); t > 0 {
				if now := time.Now(); writeArm.due(now, t) {
					dst.SetWriteDeadline(now.Add(t))
				}
			}
			w, werr := dst.Write((*bufp)[:n])
			counter.Add(int64(w))
			if werr != nil {
				return halfResult{idle: isTimeout(werr), err: benignOrNil(werr), peer: dstPeer}
			}
		}
		switch {
		case n == len(*bufp) && n == idleSize:
			r.pool.Put(bufp)
			bufp = r.pool.Get()
		case n < idleSize && len(*bufp) != idleSize:
			r.pool.Put(bufp)
			bufp = r.pool.GetIdle()
		}
		switch {
		case rerr == nil:
			continue
		case rerr == io.EOF:
			return halfResult{eof: true, peer: srcPeer}
		case isTimeout(rerr):
			// Traffic in the other direction keeps the relay alive.
			if t := r.timeout(); t > 0 && time.Since(time.Unix(0, r.last.Load())) < t {
				readArm = deadlineArm{}
				continue
			}
			return halfResult{idle: true, peer: srcPeer}
		}
		return halfResult{err: benignOrNil(rerr), peer: srcPeer}
	}
}

// deadlineArm remembers when a deadline was last pushed out, and by what.
type deadlineArm struct {
	at   time.Time
	span time.Duration
}

// due reports whether the deadline should be pushed out to now+t, and
// records that it is.
func (a *deadlineArm) due(now time.Time, t time.Duration) bool {
	if t == a.span && now.Sub(a.at) <= t/8 {
		return false
	}
	a.at, a.span = now, t
	return true
}

// reason derives why the relay ended from the two half results, in the order
// their copies stopped (see halfResult.rank).
func (r *relay) reason(first, second halfResult) Reason {
	if first.eof && (second.idle || second.err != nil) {
		// One side closed cleanly, then the other direction failed: the
		// failure is the news.
		first = second
	}
	switch {
	case r.canceled.Load():
		return Canceled
	case first.idle:
		return IdleTimeout
	case first.err != nil && first.peer == clientPeer:
		return ClientError
	case first.err != nil:
		return BackendError
	case first.peer == clientPeer:
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
		c = tc.NetConn()
	}
	if cw, ok := c.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
