package splice

import (
	"context"
	"net"
	"testing"
)

// TestInPlaceTaken checks which directions move their bytes in place:
// copying directions between sockets and TLS over a Transport, and not
// spliced ones, nor reads of a TLS conn with no Transport beneath (they
// block).
func TestInPlaceTaken(t *testing.T) {
	for _, tc := range []struct {
		name      string
		client    func(t *testing.T) net.Conn
		noSplice  bool
		toBackend bool
		toClient  bool
	}{
		{"splice", func(t *testing.T) net.Conn { _, a := tcpPair(t); return a }, false, false, false},
		{"copy", func(t *testing.T) net.Conn { _, a := tcpPair(t); return a }, true, true, true},
		{"tls", func(t *testing.T) net.Conn { return tlsPair(t, true, nil).server }, false, true, true},
		{"tls without transport", func(t *testing.T) net.Conn { return tlsPair(t, false, nil).server }, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, backend := tcpPair(t)
			done := make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			h := Start(ctx, tc.client(t), backend, Options{NoSplice: tc.noSplice}, func(Stats, error) { close(done) })
			got := [2]bool{h.r.halves[toBackend].inPlaceOK, h.r.halves[toClient].inPlaceOK}
			cancel()
			<-done
			if want := [2]bool{tc.toBackend, tc.toClient}; got != want {
				t.Errorf("in place (to backend, to client) = %v, want %v", got, want)
			}
		})
	}
}

// TestInPlaceResetAfterData checks that a reset arriving right behind the
// backend's last bytes ends the relay, whether the direction trusts
// TCP_INQ (it parks) or not: TCP_INQ counts a pending FIN but not a
// pending error.
func TestInPlaceResetAfterData(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  worldConfig
	}{
		{"copy", worldConfig{opts: Options{NoSplice: true}}},
		{"copy_parked", worldConfig{opts: Options{NoSplice: true}, park: true}},
		{"tls", worldConfig{tls: true}},
		{"tls_parked", worldConfig{tls: true, park: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.cfg)
			// A first exchange, so that the direction has moved bytes
			// and waits in place rather than parking fresh.
			mustWrite(t, w.backend, []byte("first"))
			readFull(t, w.client, 5)
			w.backend.SetLinger(0)
			mustWrite(t, w.backend, []byte("last"))
			w.backend.Close()
			r := w.wait(t)
			if r.err != nil || r.st.Reason != BackendReset {
				t.Errorf("Relay = %v, %v; want %v, nil", r.st.Reason, r.err, BackendReset)
			}
		})
	}
}
