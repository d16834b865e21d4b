package tlsterm_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"sluice/tlsterm"
)

// writeSizes is a conn that records the size of each write: after the
// handshake crypto/tls writes each record with a write of its own.
type writeSizes struct {
	net.Conn
	sizes []int
}

func (w *writeSizes) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return w.Conn.Write(p)
}

// TestRecordSizes: a 40,000-byte write goes out in 16 KiB records (two
// full ones and the rest: three writes) unless DynamicRecordSizing is on,
// when the first record holds one TCP segment and those after it grow.
func TestRecordSizes(t *testing.T) {
	ca := newCA(t, "records CA")
	file, _ := ca.leaf(t, t.TempDir(), "leaf", "leaf", ecdsaKey, "localhost")
	store := newStore(t, file)
	payload := bytes.Repeat([]byte("0123456789"), 4000)
	const fullRecord = 5 + 16384 + 1 + 16 // TLS 1.3: header, content type, AEAD tag
	const segment = 1208                  // crypto/tls's tcpMSSEstimate

	for _, dynamic := range []bool{false, true} {
		cfg := tlsterm.NewConfig(store, tlsterm.Options{MinVersion: tls.VersionTLS13, DynamicRecordSizing: dynamic})
		if cfg.DynamicRecordSizingDisabled == dynamic {
			t.Errorf("dynamic %v: DynamicRecordSizingDisabled = %v", dynamic, cfg.DynamicRecordSizingDisabled)
		}
		sc, cc := net.Pipe()
		t.Cleanup(func() { cc.Close(); sc.Close() }) // on a failure below: the reader returns
		w := &writeSizes{Conn: sc}
		server := tls.Server(w, cfg)
		client := tls.Client(cc, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
		got := make(chan error, 1)
		go func() {
			buf := make([]byte, len(payload))
			_, err := io.ReadFull(client, buf)
			if err == nil && !bytes.Equal(buf, payload) {
				err = io.ErrUnexpectedEOF
			}
			got <- err
		}()
		if err := server.Handshake(); err != nil {
			t.Fatalf("dynamic %v: handshake: %v", dynamic, err)
		}
		w.sizes = nil
		if _, err := server.Write(payload); err != nil {
			t.Fatalf("dynamic %v: write: %v", dynamic, err)
		}
		if err := <-got; err != nil {
			t.Fatalf("dynamic %v: client read: %v", dynamic, err)
		}
		sizes := w.sizes
		// The pipe's ends, not the TLS conns: a close_notify would wait
		// for a reader.
		cc.Close()
		sc.Close()

		switch {
		case !dynamic && (len(sizes) != 3 || sizes[0] != fullRecord || sizes[1] != fullRecord):
			t.Errorf("full-size records: writes of %v bytes, want %d, %d and the rest", sizes, fullRecord, fullRecord)
		case dynamic && (len(sizes) <= 3 || sizes[0] > segment || sizes[1] <= sizes[0]):
			t.Errorf("dynamic records: writes of %v bytes, want a first of at most %d and growing", sizes, segment)
		}
	}
}
