package tlsterm

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// Kernel TLS hand-over: crypto/tls runs the handshake, then the kernel
// takes over the record layer of the same socket. Only crypto/tls's public
// API is used: a per-connection key log (WithKeyLog) for the secrets, a
// record-bounded conn (RecordConn) so nothing is read ahead, and the
// records it copied to count the sequence numbers. The setsockopt side is
// in ktls_linux.go; nothing here is wired into l4 yet.

var (
	// ErrNoHandOver is wrapped by the reasons a connection must stay in
	// userspace. Nothing has been done to the socket; carry on with the
	// *tls.Conn.
	ErrNoHandOver = errors.New("tlsterm: cannot hand over to kernel TLS")
	// ErrNoKernelTLS is wrapped when the kernel cannot do TLS at all.
	ErrNoKernelTLS = errors.New("tlsterm: no kernel TLS")
	// ErrKernelTLSHalfInstalled is wrapped when TLS_TX succeeded and a
	// later setsockopt failed: the socket is no longer usable by either
	// crypto/tls or the kernel and must be closed.
	ErrKernelTLSHalfInstalled = errors.New("tlsterm: kernel TLS half installed")
)

// KernelKeys is what the kernel needs to take over one connection.
type KernelKeys struct {
	TX CryptoInfo // server → client
	RX CryptoInfo // client → server
}

// Prepare derives the kernel's keys and sequence numbers for the server
// connection whose handshake ran over c with a config from WithKeyLog; cs
// is its ConnectionState. Call it after the handshake and before any Read
// on the *tls.Conn. Writes before it are fine: they are counted.
//
// An error wraps ErrNoHandOver: the connection must stay in userspace
// (resumed TLS 1.2, a non-AEAD suite, records crypto/tls already read).
// On success the *tls.Conn must never be used again, not even closed: it
// would send an alert with stale keys. Either way c stops bounding reads.
func (c *RecordConn) Prepare(cs tls.ConnectionState) (*KernelKeys, error) {
	defer c.release()
	return c.prepare(cs)
}

func (c *RecordConn) prepare(cs tls.ConnectionState) (*KernelKeys, error) {
	if !cs.HandshakeComplete {
		return nil, fmt.Errorf("%w: handshake not complete", ErrNoHandOver)
	}
	p, ok := suiteFor(cs.Version, cs.CipherSuite)
	if !ok {
		return nil, fmt.Errorf("%w: %s with %s", ErrNoHandOver, VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.passthrough {
		return nil, fmt.Errorf("%w: already prepared", ErrNoHandOver)
	}
	s, err := c.log.secrets()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoHandOver, err)
	}
	// A partial record in means crypto/tls is inside a Read; one out means
	// a Write failed halfway. Either way the byte streams are not at a
	// record boundary the kernel could start from.
	if c.in.partial() || c.out.partial() {
		return nil, fmt.Errorf("%w: connection stops inside a record", ErrNoHandOver)
	}

	if cs.Version == tls.VersionTLS12 {
		return prepare12(p, s, c.in.records, c.out.records)
	}
	return prepare13(p, s, c.in.records, c.out.records)
}

func prepare12(p suiteParams, s secrets, in, out []record) (*KernelKeys, error) {
	// crypto/tls logs CLIENT_RANDOM only on a full handshake: a resumed
	// session's master secret comes from the ticket and is never logged.
	if s.master == nil {
		return nil, fmt.Errorf("%w: no TLS 1.2 master secret logged (resumed session)", ErrNoHandOver)
	}
	serverRandom, err := serverRandom(out)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoHandOver, err)
	}
	txSeq, err := count12(out, false)
	if err != nil {
		return nil, fmt.Errorf("%w: server records: %w", ErrNoHandOver, err)
	}
	rxSeq, err := count12(in, true)
	if err != nil {
		return nil, fmt.Errorf("%w: client records: %w", ErrNoHandOver, err)
	}
	tx, rx := infos12(p, s.master, s.clientRandom, serverRandom, txSeq, rxSeq)
	return &KernelKeys{TX: tx, RX: rx}, nil
}

func prepare13(p suiteParams, s secrets, in, out []record) (*KernelKeys, error) {
	if s.serverTraffic == nil || s.clientTraffic == nil {
		return nil, fmt.Errorf("%w: no TLS 1.3 traffic secrets logged", ErrNoHandOver)
	}
	tx, err := info13(p, s.serverTraffic, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoHandOver, err)
	}
	rx, err := info13(p, s.clientTraffic, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoHandOver, err)
	}
	if tx.Seq, err = count13(out, &tx); err != nil {
		return nil, fmt.Errorf("%w: server records: %w", ErrNoHandOver, err)
	}
	if rx.Seq, err = count13(in, &rx); err != nil {
		return nil, fmt.Errorf("%w: client records: %w", ErrNoHandOver, err)
	}
	// The handshake reads nothing past the client's Finished, the last
	// record under its handshake keys. A client record under the traffic
	// keys means someone called Read, and its plaintext may be sitting in
	// the *tls.Conn where the kernel would never see it.
	if rx.Seq != 0 {
		return nil, fmt.Errorf("%w: crypto/tls already read %d client records", ErrNoHandOver, rx.Seq)
	}
	return &KernelKeys{TX: tx, RX: rx}, nil
}
