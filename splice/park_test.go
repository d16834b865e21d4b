package splice

import (
	"bytes"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// parkAfter is the ParkAfter of the parking tests: a few milliseconds, so
// that a test parks and resumes many times in little time.
const parkAfter = 3 * time.Millisecond

// parkTransports are the paths whose two directions can both park (a TLS
// conn without a Transport beneath is read blocking and never parks).
func parkTransports() []transport {
	var trs []transport
	for _, tr := range transports {
		if tr.park {
			trs = append(trs, tr)
		}
	}
	return trs
}

// parkWorld is a world on tr whose relay parks after parkAfter on a Parker
// of its own (w.parker), with private pools.
func parkWorld(t *testing.T, tr transport, cfg worldConfig) (*world, *BufferPool, *PipePool) {
	t.Helper()
	p, err := NewParker()
	if err != nil {
		t.Fatalf("NewParker: %v", err)
	}
	buffers, pipes := &BufferPool{}, &PipePool{}
	// Registered before newWorld's cleanup, so they run after it has
	// reaped the relay.
	t.Cleanup(func() { p.Close() })
	t.Cleanup(pipes.Close)
	opts := cfg.opts
	opts.Buffers, opts.Pipes, opts.Parker = buffers, pipes, p
	if opts.ParkAfter == 0 {
		opts.ParkAfter = parkAfter
	}
	trCfg := tr.cfg(opts)
	trCfg.park = false // this Parker, with this ParkAfter
	trCfg.wrapClient = cfg.wrapClient
	w := newWorld(t, trCfg)
	w.parker = p
	return w, buffers, pipes
}

// copyHalfGoroutines counts the goroutines running a relay direction. The
// package's tests run one at a time, so these belong to the relay under
// test (or are the last moments of a previous one, hence the polling).
func copyHalfGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte(".(*half).copyHalf(")) {
			count++
		}
	}
	return count
}

// waitParked waits until n directions of w's relay are parked and no
// direction runs on a goroutine.
func waitParked(tb testing.TB, w *world, n int) {
	tb.Helper()
	parked, running := 0, 0
	ok := eventually(func() bool {
		if w.returned() {
			return false
		}
		parked, running = w.parker.Parked(), -1
		if parked != n {
			return false
		}
		running = copyHalfGoroutines()
		return running == 0
	})
	switch {
	case w.returned():
		tb.Fatalf("Relay returned while waiting for %d directions to park: %+v", n, *w.result)
	case !ok:
		tb.Fatalf("timed out waiting for %d parked directions and none running: %d parked, %d running (-1: not counted)", n, parked, running)
	}
}

// TestCopyHalfGoroutines makes sure the goroutine count sees directions
// that wait on their goroutines: a count that is always zero would make
// the parking assertions empty.
func TestCopyHalfGoroutines(t *testing.T) {
	w := newWorld(t, worldConfig{})
	mustWrite(t, w.client, []byte{1})
	readFull(t, w.backend, 1)
	if !eventually(func() bool { return copyHalfGoroutines() == 2 }) {
		t.Fatalf("%d goroutines run copyHalf, want 2", copyHalfGoroutines())
	}
	w.client.Close()
	w.backend.Close()
	w.wait(t)
}

// TestParkHoldsNothing: once both directions of an idle relay have parked,
// it has no goroutine, no buffer and no pipe; bytes then flow both ways
// again, exactly, and the relay parks again.
func TestParkHoldsNothing(t *testing.T) {
	for _, tr := range parkTransports() {
		t.Run(tr.name, func(t *testing.T) {
			w, buffers, pipes := parkWorld(t, tr, worldConfig{})
			in, out := exchangeParking(t, w, buffers, pipes, 3, func(i int) ([]byte, []byte) {
				return payload(200<<10 + i), payload(100<<10 + i)
			})
			endClean(t, w, buffers, pipes, in, out)
		})
	}
}

// TestParkedSize: a parked relay keeps its relay and two halves on the
// heap (beside its conns' own state), each laid out to fit a size class
// of Go's allocator. A field added without a look at the layout fails
// here rather than adding 32 to 96 bytes to every idle connection unseen
// (bench S4: ten thousand idle connections).
func TestParkedSize(t *testing.T) {
	if runtime.GOOS != "linux" || unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the size classes are those of 64-bit Linux, where the Parker runs")
	}
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"half", unsafe.Sizeof(half{}), 320},
		{"relay", unsafe.Sizeof(relay{}), 384},
		{"registration", unsafe.Sizeof(registration{}), 24},
	} {
		if c.size > c.max {
			t.Errorf("a %s is %d bytes, more than the %d its size class holds: reorder its fields (small ones together, last) or shrink them", c.name, c.size, c.max)
		}
	}
}

// TestParkFresh: a relay's directions park as soon as their sources have
// nothing queued, before they have moved a byte, without waiting
// ParkAfter (an hour here); traffic resumes them exactly; and once a
// direction has moved bytes it waits ParkAfter on its goroutine again.
func TestParkFresh(t *testing.T) {
	for _, tr := range parkTransports() {
		t.Run(tr.name, func(t *testing.T) {
			w, buffers, pipes := parkWorld(t, tr, worldConfig{opts: Options{ParkAfter: time.Hour}})
			waitParked(t, w, 2)
			checkPoolsIdle(t, buffers, pipes, nil)
			up, down := payload(64<<10), payload(32<<10)
			if err := exchange(w, up, down); err != nil {
				t.Fatal(err)
			}
			if !eventually(func() bool { return w.parker.Parked() == 0 && copyHalfGoroutines() == 2 }) {
				t.Fatalf("after traffic: %d parked, %d running; want both directions waiting on goroutines",
					w.parker.Parked(), copyHalfGoroutines())
			}
			closeBothEOF(t, w)
			checkResult(t, w.wait(t), Stats{BytesIn: int64(len(up)), BytesOut: int64(len(down)), Reason: ClientClosed})
		})
	}
}

// exchangeParking exchanges n messages through w, up and down as sizes
// gives them, and after each waits for both directions to park holding
// nothing; it returns the bytes moved each way.
func exchangeParking(t *testing.T, w *world, buffers *BufferPool, pipes *PipePool, n int, sizes func(int) (up, down []byte)) (in, out int64) {
	t.Helper()
	for i := range n {
		up, down := sizes(i)
		if err := exchange(w, up, down); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		in, out = in+int64(len(up)), out+int64(len(down))
		waitParked(t, w, 2)
		checkPoolsIdle(t, buffers, pipes, nil)
	}
	return in, out
}

// endClean ends w's relay with closeBothEOF and checks its result, in and
// out bytes with the client closing first, and that it left nothing behind.
func endClean(t *testing.T, w *world, buffers *BufferPool, pipes *PipePool, in, out int64) {
	t.Helper()
	closeBothEOF(t, w)
	checkResult(t, w.wait(t), Stats{BytesIn: in, BytesOut: out, Reason: ClientClosed})
	checkPoolsIdle(t, buffers, pipes, w.parker)
}

// closeBothEOF ends a relay cleanly: the client half-closes, the backend
// reads the EOF and half-closes, the client reads the EOF.
func closeBothEOF(t *testing.T, w *world) {
	t.Helper()
	peerCloseWrite(t, w.client)
	if rest := readAll(t, w.backend); len(rest) != 0 {
		t.Fatalf("backend got %d unexpected bytes", len(rest))
	}
	peerCloseWrite(t, w.backend)
	if rest := readAll(t, w.client); len(rest) != 0 {
		t.Fatalf("client got %d unexpected bytes", len(rest))
	}
}

// TestParkIdleTimeout: the idle timeout of a relay whose directions are
// both parked fires from the Parker's timers, within a generous bound.
func TestParkIdleTimeout(t *testing.T) {
	const idle = 500 * time.Millisecond
	for _, tr := range parkTransports() {
		t.Run(tr.name, func(t *testing.T) {
			w, buffers, pipes := parkWorld(t, tr, worldConfig{opts: Options{IdleTimeout: idle}})
			start := time.Now()
			if err := exchange(w, []byte("ping"), []byte("pong")); err != nil {
				t.Fatal(err)
			}
			moved := time.Now() // the last byte moved before this
			waitParked(t, w, 2)
			checkIdleEnd(t, w, buffers, pipes, 4, 4, start, moved, idle, idle+2*time.Second)
		})
	}
}

// checkIdleEnd waits for w's relay to end on its idle timeout, in and out
// bytes moved, and checks that it ended no sooner than idle after sent
// (when the last bytes had not moved yet) and no later than late after
// moved (when they had), with both conns closed and nothing left behind.
func checkIdleEnd(t *testing.T, w *world, buffers *BufferPool, pipes *PipePool, in, out int64, sent, moved time.Time, idle, late time.Duration) {
	t.Helper()
	r := w.wait(t)
	ended := time.Now()
	checkResult(t, r, Stats{BytesIn: in, BytesOut: out, Reason: IdleTimeout})
	if d := ended.Sub(sent); d < idle {
		t.Errorf("relay ended %v after the last bytes were sent, before the idle timeout of %v", d, idle)
	}
	if d := ended.Sub(moved); d > late {
		t.Errorf("relay ended %v after the last byte, idle timeout %v", d, idle)
	}
	expectEnd(t, w.client)
	expectEnd(t, w.backend)
	checkPoolsIdle(t, buffers, pipes, w.parker)
}

// TestParkIdleTimeoutSparse: a relay whose directions park after every
// message (sparse traffic) ends on its idle timeout counted from the last
// byte moved, not from the park that first armed the timer, and not
// before: messages keep coming for longer than the timeout first.
func TestParkIdleTimeoutSparse(t *testing.T) {
	const idle = time.Second
	for _, tr := range parkTransports() {
		t.Run(tr.name, func(t *testing.T) {
			w, buffers, pipes := parkWorld(t, tr, worldConfig{opts: Options{
				IdleTimeout: idle, ParkAfter: time.Hour, sparseAfter: time.Nanosecond,
			}})
			waitParked(t, w, 2)       // so that each message finds them parked
			var sent, moved time.Time // the last message's bytes moved between them
			for i := range 5 {
				sent = time.Now()
				if err := exchange(w, []byte("ping"), []byte("pong")); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				moved = time.Now()
				waitParked(t, w, 2)
				if i < 4 {
					<-time.After(idle / 4) // 5 messages span more than idle
				}
			}
			// Not after another wait of up to idle once the timer found
			// the timeout due (ParkAfter is an hour).
			checkIdleEnd(t, w, buffers, pipes, 20, 20, sent, moved, idle, idle+idle/2)
		})
	}
}

// TestParkCancel: cancelling the context of a parked relay ends it with
// Canceled, both conns closed.
func TestParkCancel(t *testing.T) {
	for _, tr := range parkTransports() {
		t.Run(tr.name, func(t *testing.T) {
			w, buffers, pipes := parkWorld(t, tr, worldConfig{})
			if err := exchange(w, []byte("ping"), []byte("pong!")); err != nil {
				t.Fatal(err)
			}
			waitParked(t, w, 2)
			w.cancel()
			checkResult(t, w.wait(t), Stats{BytesIn: 4, BytesOut: 5, Reason: Canceled})
			expectEnd(t, w.client)
			expectEnd(t, w.backend)
			checkPoolsIdle(t, buffers, pipes, w.parker)
		})
	}
}

// TestParkHalfClose: one side half-closes while both directions are
// parked; the other side sees EOF, the remaining direction parks again and
// still carries a long stream the other way; then the relay ends with the
// side that closed first as the reason.
func TestParkHalfClose(t *testing.T) {
	for _, tr := range parkTransports() {
		for _, tc := range []struct {
			name string
			// closer half-closes first; other sees the EOF, then writes
			// back and closes.
			clientFirst bool
			want        Reason
		}{
			{"client_first", true, ClientClosed},
			{"backend_first", false, BackendClosed},
		} {
			for _, sparse := range []bool{false, true} {
				name, opts := tr.name+"/"+tc.name, Options{}
				if sparse {
					// Every resume by bytes is sparse: the directions
					// park as soon as they are empty.
					name, opts.sparseAfter = name+"/sparse", time.Nanosecond
				}
				t.Run(name, func(t *testing.T) {
					w, buffers, pipes := parkWorld(t, tr, worldConfig{opts: opts})
					hello := []byte("hello")
					if err := exchange(w, hello, hello); err != nil {
						t.Fatal(err)
					}
					waitParked(t, w, 2)

					closer, other := w.client, net.Conn(w.backend)
					if !tc.clientFirst {
						closer, other = w.backend, w.client
					}
					peerCloseWrite(t, closer)
					// readAll fails on anything but a clean EOF.
					if rest := readAll(t, other); len(rest) != 0 {
						t.Fatalf("%d unexpected bytes before EOF", len(rest))
					}
					waitParked(t, w, 1)

					long := payload(300 << 10)
					sent := goWrite(other, long, false)
					if got := readFull(t, closer, len(long)); !bytes.Equal(got, long) {
						t.Fatal("bytes after the half-close differ")
					}
					recvErr(t, sent, "write after the half-close")
					if w.returned() {
						t.Fatal("Relay returned while one direction was still open")
					}
					peerCloseWrite(t, other)
					if rest := readAll(t, closer); len(rest) != 0 {
						t.Fatalf("%d unexpected bytes before EOF", len(rest))
					}

					want := Stats{BytesIn: 5, BytesOut: 5 + int64(len(long)), Reason: tc.want}
					if !tc.clientFirst {
						want.BytesIn, want.BytesOut = want.BytesOut, want.BytesIn
					}
					checkResult(t, w.wait(t), want)
					checkPoolsIdle(t, buffers, pipes, w.parker)
				})
			}
		}
	}
}

// gateConn holds back the rest of one write after its first split bytes
// until released: a TLS record that arrives in two parts.
type gateConn struct {
	net.Conn
	mu      sync.Mutex
	split   int           // >0: split the next write after this many bytes
	halfway chan struct{} // closed once the first part is written
	release chan struct{} // closed to write the rest
}

// splitNext makes the next write stop after n bytes until release is
// closed; halfway is closed once those n bytes are written.
func (g *gateConn) splitNext(n int) (halfway, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.split, g.halfway, g.release = n, make(chan struct{}), make(chan struct{})
	return g.halfway, g.release
}

func (g *gateConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	split, halfway, release := g.split, g.halfway, g.release
	g.split = 0
	g.mu.Unlock()
	if split <= 0 || split >= len(p) {
		return g.Conn.Write(p)
	}
	n, err := g.Conn.Write(p[:split])
	close(halfway)
	if err != nil {
		return n, err
	}
	<-release
	m, err := g.Conn.Write(p[split:])
	return n + m, err
}

// CloseWrite keeps half-close working through the gate.
func (g *gateConn) CloseWrite() error { return g.Conn.(closeWriter).CloseWrite() }

// TestParkTLSRecord: a parked TLS relay resumes when the client sends a
// record and delivers it; a record that arrives in two parts is read in
// two wake-ups, with the relay parked in between holding nothing of its
// own (the partial record waits in crypto/tls), and delivered once whole.
func TestParkTLSRecord(t *testing.T) {
	tr := transport{name: "tls_parked", tls: true, park: true}
	var gate *gateConn
	wrap := func(c net.Conn) net.Conn {
		gate = &gateConn{Conn: c}
		return gate
	}
	w, buffers, pipes := parkWorld(t, tr, worldConfig{wrapClient: wrap})
	if err := exchange(w, []byte("ping"), []byte("pong")); err != nil {
		t.Fatal(err)
	}
	waitParked(t, w, 2)

	whole := []byte("one whole record")
	mustWrite(t, w.client, whole)
	if got := readFull(t, w.backend, len(whole)); !bytes.Equal(got, whole) {
		t.Fatalf("backend got %q, want %q", got, whole)
	}
	waitParked(t, w, 2)

	split := []byte("a record in two parts")
	// The 5-byte record header and a few bytes of ciphertext first.
	halfway, release := gate.splitNext(12)
	sent := goWrite(w.client, split, false)
	select {
	case <-halfway:
	case <-time.After(testTimeout):
		t.Fatal("the first part was not written")
	}
	// The relay has read the first part (its socket holds nothing) and
	// parked again.
	if !eventually(func() bool {
		return inq(t, w.relayClientRaw) == 0 && w.parker.Parked() == 2 && copyHalfGoroutines() == 0
	}) {
		t.Fatalf("the relay did not read the partial record and park again: %d bytes unread, %d parked, %d running",
			inq(t, w.relayClientRaw), w.parker.Parked(), copyHalfGoroutines())
	}
	checkPoolsIdle(t, buffers, pipes, nil)
	close(release)
	recvErr(t, sent, "client write")
	if got := readFull(t, w.backend, len(split)); !bytes.Equal(got, split) {
		t.Fatalf("backend got %q, want %q", got, split)
	}

	endClean(t, w, buffers, pipes, int64(4+len(whole)+len(split)), 4)
}

// TestParkManyTimes: 200 small messages each way, each one sent to a relay
// whose two directions have parked (every fourth one without waiting, so
// that messages also meet directions on their way to parking), arrive
// exactly: nothing lost, reordered or duplicated.
func TestParkManyTimes(t *testing.T) {
	const messages = 200
	for _, tr := range parkTransports() {
		t.Run(tr.name, func(t *testing.T) {
			w, buffers, pipes := parkWorld(t, tr, worldConfig{})
			var in, out int64
			for i := range messages {
				// Different contents and lengths each time, so that a
				// duplicate or a swap shows up as different bytes.
				up, down := payload(1+i*37%1500), payload(1+i*53%1100)
				if err := exchange(w, up, down); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				in, out = in+int64(len(up)), out+int64(len(down))
				if i%4 != 3 && !eventually(func() bool { return w.parker.Parked() == 2 }) {
					t.Fatalf("message %d: %d directions parked, want 2", i, w.parker.Parked())
				}
			}
			endClean(t, w, buffers, pipes, in, out)
		})
	}
}

// TestParkSparse: a direction resumed after being parked for a while
// (sparse traffic: here any while at all) parks again as soon as its
// source is empty, without waiting ParkAfter (an hour here); many small
// messages each way, each meeting both directions parked, arrive exactly,
// moved by a few runners.
func TestParkSparse(t *testing.T) {
	const messages = 50
	for _, tr := range parkTransports() {
		t.Run(tr.name, func(t *testing.T) {
			w, buffers, pipes := parkWorld(t, tr, worldConfig{opts: Options{ParkAfter: time.Hour, sparseAfter: time.Nanosecond}})
			waitParked(t, w, 2)
			in, out := exchangeParking(t, w, buffers, pipes, messages, func(i int) ([]byte, []byte) {
				return payload(1 + i*37%1500), payload(1 + i*53%1100)
			})
			// 2 resumes a message: on the runners that ran the
			// directions before, not on a new goroutine each.
			if n := w.parker.runners.started.Load(); n > 10 {
				t.Errorf("%d runners started for %d resumes, want a few that run them all", n, 2*messages)
			}
			endClean(t, w, buffers, pipes, in, out)
		})
	}
}

// TestRunnersAgeOut: the runners that ran a relay's directions wait for
// the next while they are young, and end once they have waited idleFor;
// each end of the relay's parking and resuming found a waiting runner.
func TestRunnersAgeOut(t *testing.T) {
	const idleFor = 500 * time.Millisecond
	for _, tr := range parkTransports() {
		t.Run(tr.name, func(t *testing.T) {
			p, err := NewParker()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			p.runners.idleFor = idleFor
			w := newWorld(t, worldConfig{tls: tr.tls, plainTLS: tr.plainTLS, opts: Options{
				Parker: p, ParkAfter: time.Hour, sparseAfter: time.Nanosecond, NoSplice: tr.noSplice}})
			w.parker = p
			waitParked(t, w, 2)
			var in, out int64
			for i := range 20 {
				up, down := payload(100+i), payload(200+i)
				if err := exchange(w, up, down); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				in, out = in+int64(len(up)), out+int64(len(down))
				waitParked(t, w, 2)
			}
			if !eventually(func() bool { return p.runners.waiting() > 0 }) {
				t.Errorf("no runner waits after the relay's directions parked")
			}
			if !eventually(func() bool { return p.runners.waiting() == 0 }) {
				t.Errorf("%d runners still wait %v after they last ran", p.runners.waiting(), testTimeout)
			}
			closeBothEOF(t, w)
			checkResult(t, w.wait(t), Stats{BytesIn: in, BytesOut: out, Reason: ClientClosed})
		})
	}
}

// TestParkSparseTrickle: messages that arrive in pieces, written one
// after another, to directions that resume sparse and park as soon as
// their source is empty (ParkAfter an hour): a piece often comes while
// its direction runs after the Parker's event for the first, and its own
// event must not be lost (half.park reads again), nor a late one for
// bytes already moved resume anything wrongly.
func TestParkSparseTrickle(t *testing.T) {
	const messages, pieces = 300, 4
	for _, tr := range parkTransports() {
		t.Run(tr.name, func(t *testing.T) {
			w, buffers, pipes := parkWorld(t, tr, worldConfig{opts: Options{ParkAfter: time.Hour, sparseAfter: time.Nanosecond}})
			waitParked(t, w, 2)
			var in, out int64
			for i := range messages {
				up, down := payload(pieces*(1+i%40)), payload(pieces*(1+i*7%50))
				if err := exchangePieces(w, up, down, pieces); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				in, out = in+int64(len(up)), out+int64(len(down))
			}
			waitParked(t, w, 2)
			endClean(t, w, buffers, pipes, in, out)
		})
	}
}

// TestParkSparseMixed: messages in pairs, the second of each finding its
// directions parked only briefly (they wait on their goroutines, time out
// after ParkAfter and park with a deadline that has passed), the first of
// the next pair after a pause (they resume sparse, clear that deadline
// and park at once); nothing lost, reordered or duplicated.
func TestParkSparseMixed(t *testing.T) {
	const pairs, sparseAfter = 15, 20 * time.Millisecond
	for _, tr := range parkTransports() {
		t.Run(tr.name, func(t *testing.T) {
			w, buffers, pipes := parkWorld(t, tr, worldConfig{opts: Options{sparseAfter: sparseAfter}})
			var in, out int64
			for i := range 2 * pairs {
				if i%2 == 0 {
					waitParked(t, w, 2)
					<-time.After(sparseAfter)
				}
				up, down := payload(1+i*37%1500), payload(1+i*53%1100)
				if err := exchange(w, up, down); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				in, out = in+int64(len(up)), out+int64(len(down))
			}
			endClean(t, w, buffers, pipes, in, out)
		})
	}
}

// TestParkStaleEdge: an edge the watcher takes for a direction between its
// resume and its leaving the epoll set (a registration to last, resumed
// not sparse) is stale once that direction runs: when it parks after
// ParkAfter, it arms its socket anew, so it parks then, rather than read
// again and wait another ParkAfter on its goroutine. The edge is made by
// calling resume as the watcher does, once the message it resumed for is
// through.
func TestParkStaleEdge(t *testing.T) {
	const parkAfter, sparseAfter = 400 * time.Millisecond, 200 * time.Millisecond
	for _, tr := range parkTransports() {
		t.Run(tr.name, func(t *testing.T) {
			w, buffers, pipes := parkWorld(t, tr, worldConfig{opts: Options{ParkAfter: parkAfter, sparseAfter: sparseAfter}})
			waitParked(t, w, 2)
			var down *half
			w.parker.parked.Range(func(_, v any) bool {
				if h := v.(*half); h.dir == toClient {
					down = h
				}
				return true
			})
			if down == nil {
				t.Fatal("the backend-to-client direction is not registered with the Parker")
			}
			var out int64
			for attempt := 1; ; attempt++ {
				// Parked longer than sparseAfter: the message resumes
				// it sparse, and it parks again at once, registered to
				// last.
				<-time.After(sparseAfter)
				first, second := payload(100), payload(200)
				if err := exchange(w, nil, first); err != nil {
					t.Fatal(err)
				}
				waitParked(t, w, 2)
				// At once: it resumes not sparse, leaves the set and
				// waits on its goroutine.
				if err := exchange(w, nil, second); err != nil {
					t.Fatal(err)
				}
				out += int64(len(first) + len(second))
				down.r.mu.Lock()
				sparse := down.sparse
				down.r.mu.Unlock()
				if !sparse {
					break
				}
				// The second came sparseAfter or more after the first
				// (a slow machine): again.
				if attempt == 3 {
					t.Fatalf("the second message resumed its direction sparse in %d attempts: no test", attempt)
				}
				waitParked(t, w, 2)
			}
			down.resume(true)
			waitParked(t, w, 2)
			if n := w.parker.rereads.Load(); n != 0 {
				t.Errorf("%d parks read again for a stale edge, want 0", n)
			}
			endClean(t, w, buffers, pipes, 0, out)
		})
	}
}
