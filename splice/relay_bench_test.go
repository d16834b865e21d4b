package splice

import (
	"io"
	"testing"
)

// benchChunk is the size of each write; benchPerOp is what one iteration
// moves from the client to the backend through the relay.
const (
	benchChunk = 32 << 10
	benchPerOp = 1 << 20
)

// BenchmarkRelayTCP measures client→backend throughput through Relay when
// both sides are plain loopback TCP (the splice-capable case).
func BenchmarkRelayTCP(b *testing.B) { benchRelay(b, false) }

// BenchmarkRelayTLS measures the same with TLS between the client and the
// relay, so the relay decrypts every byte (the buffered slow path).
func BenchmarkRelayTLS(b *testing.B) { benchRelay(b, true) }

func benchRelay(b *testing.B, useTLS bool) {
	w := newWorld(b, worldConfig{tls: useTLS})
	drained := make(chan drainResult, 1)
	go drain(drained, w.backend)

	chunk := make([]byte, benchChunk)
	b.SetBytes(benchPerOp)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for range benchPerOp / benchChunk {
			if _, err := w.client.Write(chunk); err != nil {
				b.Fatalf("write: %v", err)
			}
		}
	}
	peerCloseWrite(b, w.client)
	d := <-drained
	b.StopTimer()

	if d.err != nil {
		b.Fatalf("drain: %v", d.err)
	}
	if want := int64(b.N) * benchPerOp; d.n != want {
		b.Fatalf("backend got %d bytes, want %d", d.n, want)
	}
	w.backend.Close()
	if r := w.wait(b); r.err != nil || r.st.BytesIn != d.n {
		b.Fatalf("Relay = %+v, %v", r.st, r.err)
	}
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
