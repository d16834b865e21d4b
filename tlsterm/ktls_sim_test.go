package tlsterm

import (
	"bytes"
	"crypto/cipher"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
)

// kernelSim does to records what the kernel does with a CryptoInfo, written
// from RFC 8446 §5.2-5.3, RFC 5288 and RFC 7905 independently of
// Prepare, so that a peer accepting its records proves the keys and
// sequence numbers.
type kernelSim struct {
	ci       CryptoInfo
	aead     cipher.AEAD
	seq      uint64
	explicit uint64 // TLS 1.2 AES-GCM: the next explicit nonce
}

func newSim(ci CryptoInfo) (*kernelSim, error) {
	aead, err := recordAEAD(ci.CipherType, ci.Key)
	if err != nil {
		return nil, err
	}
	k := &kernelSim{ci: ci, aead: aead, seq: ci.Seq}
	if ci.Version == tls.VersionTLS12 && ci.CipherType != tlsCipherChaCha20Poly1305 {
		k.explicit = binary.BigEndian.Uint64(ci.IV)
	}
	return k, nil
}

func newKernelSim(t *testing.T, ci CryptoInfo) *kernelSim {
	t.Helper()
	k, err := newSim(ci)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kernelSim) gcm12() bool {
	return k.ci.Version == tls.VersionTLS12 && k.ci.CipherType != tlsCipherChaCha20Poly1305
}

// aad12 is the TLS 1.2 additional data: seq, type, version, length.
func (k *kernelSim) aad12(typ byte, n int) []byte {
	aad := binary.BigEndian.AppendUint64(nil, k.seq)
	aad = append(aad, typ, 3, 3)
	return binary.BigEndian.AppendUint16(aad, uint16(n))
}

// seal returns a whole record of type typ carrying pt.
func (k *kernelSim) seal(typ byte, pt []byte) []byte {
	defer func() { k.seq++ }()
	hdr := func(typ byte, n int) []byte { return binary.BigEndian.AppendUint16([]byte{typ, 3, 3}, uint16(n)) }
	switch {
	case k.ci.Version == tls.VersionTLS13:
		inner := append(bytes.Clone(pt), typ)
		h := hdr(recordTypeApplicationData, len(inner)+k.aead.Overhead())
		return k.aead.Seal(h, nonce13(k.ci.nonceBase(), k.seq), inner, h)
	case k.gcm12():
		explicit := binary.BigEndian.AppendUint64(nil, k.explicit)
		k.explicit++
		nonce := append(bytes.Clone(k.ci.Salt), explicit...)
		body := k.aead.Seal(explicit, nonce, pt, k.aad12(typ, len(pt)))
		return append(hdr(typ, len(body)), body...)
	default: // TLS 1.2 ChaCha20
		body := k.aead.Seal(nil, nonce13(k.ci.IV, k.seq), pt, k.aad12(typ, len(pt)))
		return append(hdr(typ, len(body)), body...)
	}
}

// open decrypts a whole record, returning its real content type.
func (k *kernelSim) open(rec []byte) (byte, []byte, error) {
	hdr, body := rec[:recordHeaderLen], rec[recordHeaderLen:]
	var (
		typ = hdr[0]
		pt  []byte
		err error
	)
	switch {
	case k.ci.Version == tls.VersionTLS13:
		pt, err = k.aead.Open(nil, nonce13(k.ci.nonceBase(), k.seq), body, hdr)
		if err == nil {
			pt = bytes.TrimRight(pt, "\x00")
			if len(pt) == 0 {
				return 0, nil, fmt.Errorf("seq %d: no content type", k.seq)
			}
			typ, pt = pt[len(pt)-1], pt[:len(pt)-1]
		}
	case k.gcm12():
		if len(body) < 8+16 {
			return 0, nil, fmt.Errorf("seq %d: short record", k.seq)
		}
		nonce := append(bytes.Clone(k.ci.Salt), body[:8]...)
		pt, err = k.aead.Open(nil, nonce, body[8:], k.aad12(typ, len(body)-8-16))
	default:
		pt, err = k.aead.Open(nil, nonce13(k.ci.IV, k.seq), body, k.aad12(typ, len(body)-16))
	}
	if err != nil {
		return 0, nil, fmt.Errorf("seq %d: %w", k.seq, err)
	}
	k.seq++
	return typ, pt, nil
}

// readRecord reads one whole record from r.
func readRecord(r io.Reader) ([]byte, error) {
	rec := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(r, rec); err != nil {
		return nil, err
	}
	rec = append(rec, make([]byte, binary.BigEndian.Uint16(rec[3:]))...)
	_, err := io.ReadFull(r, rec[recordHeaderLen:])
	return rec, err
}

// splitRecords cuts a captured byte stream into whole records.
func splitRecords(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var recs [][]byte
	for len(b) > 0 {
		if len(b) < recordHeaderLen {
			t.Fatalf("capture ends inside a record header")
		}
		n := recordHeaderLen + int(binary.BigEndian.Uint16(b[3:]))
		if len(b) < n {
			t.Fatalf("capture ends inside a record")
		}
		recs = append(recs, b[:n])
		b = b[n:]
	}
	return recs
}

// wireRecorder keeps every byte that crosses the server's socket.
type wireRecorder struct {
	net.Conn
	mu       sync.Mutex
	fromPeer bytes.Buffer
	toPeer   bytes.Buffer
}

func (w *wireRecorder) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	w.mu.Lock()
	w.fromPeer.Write(p[:n])
	w.mu.Unlock()
	return n, err
}

func (w *wireRecorder) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	w.mu.Lock()
	w.toPeer.Write(p[:n])
	w.mu.Unlock()
	return n, err
}

func (w *wireRecorder) captured() (fromPeer, toPeer []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.fromPeer.Bytes()), bytes.Clone(w.toPeer.Bytes())
}

type opened struct {
	typ byte
	pt  []byte
}

// openCaptured proves a count on the wire: of one direction's captured
// records, the last ci.Seq+later ones open in order under ci's key from
// sequence 0, and (TLS 1.3) the record before them does not, so exactly
// ci.Seq records went under the key before the hand-over. later is the
// number of records sent after Prepare. It returns what they carried.
func openCaptured(t *testing.T, stream []byte, ci CryptoInfo, later int) []opened {
	t.Helper()
	var enc [][]byte
	for _, r := range splitRecords(t, stream) {
		switch {
		case ci.Version == tls.VersionTLS13 && r[0] == recordTypeApplicationData:
			enc = append(enc, r)
		case ci.Version == tls.VersionTLS12 && r[0] == recordTypeChangeCipherSpec:
			enc = enc[:0] // from here on, the new keys
			enc = append(enc, nil)
		case ci.Version == tls.VersionTLS12 && enc != nil:
			enc = append(enc, r)
		}
	}
	if ci.Version == tls.VersionTLS12 {
		if len(enc) == 0 {
			t.Fatal("no ChangeCipherSpec captured")
		}
		enc = enc[1:]
	}
	under := int(ci.Seq) + later
	before := len(enc) - under
	if before < 0 {
		t.Fatalf("%d records under the key captured, want at least %d", len(enc), under)
	}
	zero := ci
	zero.Seq = 0
	if ci.Version == tls.VersionTLS13 {
		if before == 0 {
			t.Fatal("no handshake-key record captured before the traffic-key ones")
		}
		if _, _, err := newKernelSim(t, zero).open(enc[before-1]); err == nil {
			t.Fatalf("record before the first counted one opens under the traffic key: the count is %d too low", 1)
		}
	} else if before != 0 {
		t.Fatalf("%d records after ChangeCipherSpec, want %d", len(enc), under)
	}
	sim := newKernelSim(t, zero)
	var out []opened
	for _, r := range enc[before:] {
		typ, pt, err := sim.open(r)
		if err != nil {
			t.Fatalf("captured record does not open: %v", err)
		}
		out = append(out, opened{typ, pt})
	}
	return out
}
