package splice

import (
	"io"
	"net"
	"testing"
	"time"
)

// benchChunk is the size of each write; benchPerOp is what one iteration
// moves from the client to the backend through the relay.
const (
	benchChunk = 32 << 10
	benchPerOp = 1 << 20
)

// BenchmarkRelayTCP measures client→backend throughput through Relay when
// both sides are plain loopback TCP (the splice-capable case).
func BenchmarkRelayTCP(b *testing.B) { benchRelay(b, worldConfig{}) }

// BenchmarkRelaySplice is the default path between two sockets: splice(2)
// through a pooled pipe.
func BenchmarkRelaySplice(b *testing.B) { benchRelay(b, worldConfig{}) }

// BenchmarkRelayCopy is the same topology copying through a pooled buffer
// (NoSplice), for comparison with the splice path.
func BenchmarkRelayCopy(b *testing.B) { benchRelay(b, worldConfig{opts: Options{NoSplice: true}}) }

// BenchmarkRelayTLS measures the same with TLS between the client and the
// relay, over a Transport, so the relay decrypts every byte (the buffered
// slow path).
func BenchmarkRelayTLS(b *testing.B) { benchRelay(b, worldConfig{tls: true}) }

func benchRelay(b *testing.B, cfg worldConfig) {
	w := newWorld(b, cfg)
	in := benchSend(b, w.client, w.backend)
	w.backend.Close()
	if r := w.wait(b); r.err != nil || r.st.BytesIn != in {
		b.Fatalf("Relay = %+v, %v", r.st, r.err)
	}
}

// BenchmarkStdlibIoCopy is the yardstick: a hand-made relay of the same
// topology, one io.Copy per direction between the two *net.TCPConn, which
// splices internally through the runtime's own pipe pool.
func BenchmarkStdlibIoCopy(b *testing.B) {
	client, clientEnd := tcpPair(b)
	backendEnd, backend := tcpPair(b)
	done := make(chan error, 2)
	go stdlibCopy(done, backendEnd, clientEnd)
	go stdlibCopy(done, clientEnd, backendEnd)
	benchSend(b, client, backend)
	backend.Close()
	for range 2 {
		if err := <-done; err != nil {
			b.Fatalf("io.Copy: %v", err)
		}
	}
}

// stdlibCopy copies src to dst with io.Copy and half-closes dst at EOF.
func stdlibCopy(done chan<- error, dst, src *net.TCPConn) {
	_, err := io.Copy(dst, src)
	if err == nil {
		err = dst.CloseWrite()
	}
	done <- err
}

// benchSend writes b.N × benchPerOp bytes from client, half-closes it and
// waits until backend has read them all, which it checks. It returns the
// byte count.
func benchSend(b *testing.B, client net.Conn, backend io.Reader) int64 {
	drained := make(chan drainResult, 1)
	go drain(drained, backend)

	chunk := make([]byte, benchChunk)
	b.SetBytes(benchPerOp)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for range benchPerOp / benchChunk {
			if _, err := client.Write(chunk); err != nil {
				b.Fatalf("write: %v", err)
			}
		}
	}
	peerCloseWrite(b, client)
	d := <-drained
	b.StopTimer()

	if d.err != nil {
		b.Fatalf("drain: %v", d.err)
	}
	if want := int64(b.N) * benchPerOp; d.n != want {
		b.Fatalf("backend got %d bytes, want %d", d.n, want)
	}
	return d.n
}

type drainResult struct {
	n   int64
	err error
}

// drain reads c to EOF, counting bytes.
func drain(done chan<- drainResult, c io.Reader) {
	buf := make([]byte, 64<<10)
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, buf)
	done <- drainResult{n, err}
}

// BenchmarkEchoParked is one small message each way through a relay whose
// two directions are both parked when it arrives, as every message of
// sparse WebSocket traffic is (make bench's S5s): both resume, move it,
// and park again at once (every resume counts as sparse, as S5s's do
// after 10 s parked). With -benchmem it gives what that allocates.
func BenchmarkEchoParked(b *testing.B) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"tcp", false}, {"tls", true}} {
		b.Run(tc.name, func(b *testing.B) {
			w := newWorld(b, worldConfig{tls: tc.tls, park: true, opts: Options{sparseAfter: time.Nanosecond}})
			msg, got := make([]byte, 64), make([]byte, 64)
			for b.Loop() {
				b.StopTimer()
				for w.parker.Parked() < 2 {
					time.Sleep(50 * time.Microsecond)
				}
				b.StartTimer()
				if _, err := w.client.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(w.backend, got); err != nil {
					b.Fatal(err)
				}
				if _, err := w.backend.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(w.client, got); err != nil {
					b.Fatal(err)
				}
			}
			w.backend.Close()
			w.client.Close()
			w.wait(b)
		})
	}
}
