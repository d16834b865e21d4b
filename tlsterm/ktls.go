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
// in ktls_linux.go, the connection the kernel then runs in ktls_conn.go.

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

	// For TLS 1.3 key updates after the hand-over: the suite and both
	// directions' current traffic secrets.
	suite                      suiteParams
	suiteID                    uint16
	clientSecret, serverSecret []byte
}

// Reasons a connection stays in userspace, as FallbackReason names them:
// a fixed set, for metrics labels.
const (
	FallbackCipher   = "cipher"        // a version or suite the kernel cannot take
	FallbackResumed  = "resumed_tls12" // a resumed TLS 1.2 session: no key logged
	FallbackBuffered = "buffered"      // crypto/tls holds bytes the kernel would miss
	FallbackKernel   = "kernel"        // the kernel refused the keys
	FallbackOther    = "other"
)

// handOverError is an ErrNoHandOver with its reason.
type handOverError struct {
	reason string
	err    error
}

func (e *handOverError) Error() string   { return ErrNoHandOver.Error() + ": " + e.err.Error() }
func (e *handOverError) Unwrap() []error { return []error{ErrNoHandOver, e.err} }

func noHandOver(reason string, format string, args ...any) error {
	return &handOverError{reason: reason, err: fmt.Errorf(format, args...)}
}

// FallbackReason names why err kept a connection in userspace: one of the
// Fallback constants.
func FallbackReason(err error) string {
	var he *handOverError
	switch {
	case errors.As(err, &he):
		return he.reason
	case errors.Is(err, ErrNoKernelTLS):
		return FallbackKernel
	}
	return FallbackOther
}

// Prepare derives the kernel's keys and sequence numbers for the server
// connection whose handshake ran over c with a config from WithKeyLog; cs
// is its ConnectionState, and read is how many plaintext bytes the caller
// has read from the *tls.Conn (a peek at the request head). Writes before
// it are fine: they are counted. The bytes read must be all that
// crypto/tls decrypted, or some would be left in its buffer, where the
// kernel would never see them; reading with a buffer of at least a
// record's plaintext (16 KiB) after the first read leaves none.
//
// An error wraps ErrNoHandOver (see FallbackReason): the connection must
// stay in userspace. On success the *tls.Conn must never be used again,
// not even closed: it would send an alert with stale keys. Either way c
// stops bounding reads.
func (c *RecordConn) Prepare(cs tls.ConnectionState, read int64) (*KernelKeys, error) {
	defer c.release()
	return c.prepare(cs, read)
}

func (c *RecordConn) prepare(cs tls.ConnectionState, read int64) (*KernelKeys, error) {
	if !cs.HandshakeComplete {
		return nil, noHandOver(FallbackOther, "handshake not complete")
	}
	p, ok := suiteFor(cs.Version, cs.CipherSuite)
	if !ok {
		return nil, noHandOver(FallbackCipher, "%s with %s", VersionName(cs.Version), CipherName(cs.CipherSuite))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.passthrough {
		return nil, noHandOver(FallbackOther, "already prepared")
	}
	s, err := c.log.secrets()
	if err != nil {
		return nil, noHandOver(FallbackOther, "%w", err)
	}
	// A partial record in means crypto/tls is inside a Read; one out means
	// a Write failed halfway. Either way the byte streams are not at a
	// record boundary the kernel could start from.
	if c.in.partial() || c.out.partial() {
		return nil, noHandOver(FallbackBuffered, "connection stops inside a record")
	}

	var k *KernelKeys
	var decrypted int64
	if cs.Version == tls.VersionTLS12 {
		k, decrypted, err = prepare12(p, s, c.in.records, c.out.records)
	} else {
		k, decrypted, err = prepare13(p, s, c.in.records, c.out.records)
	}
	if err != nil {
		return nil, err
	}
	k.suiteID = cs.CipherSuite
	if decrypted != read {
		return nil, noHandOver(FallbackBuffered, "crypto/tls decrypted %d bytes of client data and %d were read from it", decrypted, read)
	}
	return k, nil
}

func prepare12(p suiteParams, s secrets, in, out []record) (*KernelKeys, int64, error) {
	// crypto/tls logs CLIENT_RANDOM only on a full handshake: a resumed
	// session's master secret comes from the ticket and is never logged.
	if s.master == nil {
		return nil, 0, noHandOver(FallbackResumed, "no TLS 1.2 master secret logged (resumed session)")
	}
	serverRandom, err := serverRandom(out)
	if err != nil {
		return nil, 0, noHandOver(FallbackOther, "%w", err)
	}
	txSeq, _, err := count12(out, p)
	if err != nil {
		return nil, 0, noHandOver(FallbackOther, "server records: %w", err)
	}
	rxSeq, read, err := count12(in, p)
	if err != nil {
		return nil, 0, noHandOver(FallbackOther, "client records: %w", err)
	}
	tx, rx := infos12(p, s.master, s.clientRandom, serverRandom, txSeq, rxSeq)
	return &KernelKeys{TX: tx, RX: rx, suite: p}, read, nil
}

func prepare13(p suiteParams, s secrets, in, out []record) (*KernelKeys, int64, error) {
	if s.serverTraffic == nil || s.clientTraffic == nil {
		return nil, 0, noHandOver(FallbackOther, "no TLS 1.3 traffic secrets logged")
	}
	tx, err := info13(p, s.serverTraffic, 0)
	if err != nil {
		return nil, 0, noHandOver(FallbackOther, "%w", err)
	}
	rx, err := info13(p, s.clientTraffic, 0)
	if err != nil {
		return nil, 0, noHandOver(FallbackOther, "%w", err)
	}
	if tx.Seq, _, err = count13(out, &tx, false); err != nil {
		return nil, 0, noHandOver(FallbackOther, "server records: %w", err)
	}
	// A client record under its traffic key that is not application data
	// (a KeyUpdate during a peek) is refused: the key may have changed.
	var read int64
	if rx.Seq, read, err = count13(in, &rx, true); err != nil {
		return nil, 0, noHandOver(FallbackBuffered, "client records: %w", err)
	}
	return &KernelKeys{TX: tx, RX: rx, suite: p, clientSecret: s.clientTraffic, serverSecret: s.serverTraffic}, read, nil
}
