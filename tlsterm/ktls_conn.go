package tlsterm

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// KernelTLS is what this kernel's TLS can take, as ProbeKernel found.
type KernelTLS struct {
	// Err is nil if the kernel attaches its TLS ULP; else why not
	// (wrapping ErrNoKernelTLS).
	Err error
	// Rekey: a TLS 1.3 key can be replaced (Linux 6.14 and later), so a
	// client's KeyUpdate can be followed.
	Rekey bool

	ciphers map[cipherKey]error // nil error: TX and RX both installed
}

type cipherKey struct{ version, cipherType uint16 }

// Supports reports whether the kernel took keys for k's version and cipher
// when probed: nil, or an error wrapping ErrNoKernelTLS.
func (kt *KernelTLS) Supports(k *KernelKeys) error {
	if kt.Err != nil {
		return kt.Err
	}
	err, ok := kt.ciphers[cipherKey{k.TX.Version, k.TX.CipherType}]
	if !ok {
		return fmt.Errorf("%w: cipher %d not probed", ErrNoKernelTLS, k.TX.CipherType)
	}
	return err
}

// String says what the kernel can do, for the log line at start.
func (kt *KernelTLS) String() string {
	if kt.Err != nil {
		return kt.Err.Error()
	}
	n := 0
	for _, err := range kt.ciphers {
		if err == nil {
			n++
		}
	}
	return fmt.Sprintf("%d of %d TLS 1.2/1.3 AEAD ciphers, rekey %v", n, len(kt.ciphers), kt.Rekey)
}

// HandOver gives conn's record layer to the kernel with k's keys and
// returns the connection the kernel now runs. An error wrapping
// ErrNoKernelTLS left the socket as it was: go on with the *tls.Conn. One
// wrapping ErrKernelTLSHalfInstalled left it usable by no one: close it.
func HandOver(conn *net.TCPConn, k *KernelKeys) (*KernelConn, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoKernelTLS, err)
	}
	if err := InstallKernelTLS(conn, k); err != nil {
		return nil, err
	}
	return &KernelConn{
		TCPConn:      conn,
		rc:           rc,
		version:      k.TX.Version,
		suite:        k.suite,
		suiteID:      k.suiteID,
		clientSecret: k.clientSecret,
		serverSecret: k.serverSecret,
	}, nil
}

// KernelConn is a server connection whose TLS record layer the kernel
// runs: reads and writes, and splice(2) both ways, carry plaintext. What is
// not application data stops a read; Control takes it. The *tls.Conn of
// its handshake is no longer involved.
type KernelConn struct {
	*net.TCPConn
	rc      syscall.RawConn
	version uint16
	suite   suiteParams
	suiteID uint16
	// The TLS 1.3 traffic secrets in force, for key updates.
	clientSecret []byte // only the reading direction's Control touches it

	mu           sync.Mutex // guards serverSecret and sending records
	serverSecret []byte
	// updateOwed: the client asked for a key update, and ours must go out
	// before our next application data (RFC 8446 §4.6.3).
	updateOwed atomic.Bool
	keyUpdates atomic.Int64
}

// maxPlaintext is the largest record plaintext (RFC 8446 §5.1).
const maxPlaintext = 1 << 14

// Alerts (RFC 8446 §6).
const (
	alertWarning       = 1
	alertFatal         = 2
	alertCloseNotify   = 0
	alertUserCanceled  = 90
	handshakeKeyUpdate = 24
)

// ErrKeyUpdate is wrapped when a client's TLS 1.3 KeyUpdate cannot be
// followed: the kernel cannot replace keys before Linux 6.14, and the
// connection must end.
var ErrKeyUpdate = errors.New("tlsterm: kernel cannot follow the client's key update")

// Control is for the relay reading conn: err stopped a read or splice. If
// a record that is not application data stopped it, Control reads and
// handles that record and returns io.EOF for close_notify, nil after a
// record handled in place (a warning alert, a KeyUpdate), or an error for
// one that ends the stream (a fatal alert, renegotiation). If the record
// turns out to be application data after all, its plaintext is returned,
// for the relay to pass on. Other errors come back named for what the
// kernel means by them (a record that failed authentication, say).
func (c *KernelConn) Control(err error) ([]byte, error) {
	control, err := readFailure(err)
	if !control {
		return nil, err
	}
	// Rare, and at most a record: not worth holding a buffer per
	// connection for.
	buf := make([]byte, maxPlaintext+1)
	typ, n, err := recvRecord(c.rc, buf, false)
	if err != nil {
		return nil, fmt.Errorf("kernel tls: read control record: %w", err)
	}
	b := buf[:n]
	switch typ {
	case 0:
		return nil, nil // nothing was queued after all
	case recordTypeApplicationData:
		return b, nil
	case recordTypeAlert:
		return nil, alert(b)
	case recordTypeHandshake:
		return nil, c.handshakeMessage(b)
	}
	return nil, fmt.Errorf("kernel tls: unexpected record of type %d from the client", typ)
}

// alert is what an alert record from the client means for its stream.
func alert(b []byte) error {
	if len(b) != 2 {
		return fmt.Errorf("kernel tls: alert record of %d bytes", len(b))
	}
	switch {
	case b[1] == alertCloseNotify:
		return io.EOF
	case b[0] == alertWarning && b[1] == alertUserCanceled:
		return nil // followed by close_notify (RFC 8446 §6.1)
	}
	return fmt.Errorf("kernel tls: client sent alert: %w", tls.AlertError(b[1]))
}

// handshakeMessage handles a handshake record from the client after the
// handshake: in TLS 1.3 a KeyUpdate, alone in its record (it must end
// one, and a client has no other message to send); anything else, and
// any in TLS 1.2 (renegotiation), ends the connection.
func (c *KernelConn) handshakeMessage(b []byte) error {
	if c.version != tls.VersionTLS13 {
		return errors.New("kernel tls: client asked for renegotiation, which is refused")
	}
	if len(b) != 5 || b[0] != handshakeKeyUpdate || b[1] != 0 || b[2] != 0 || b[3] != 1 || b[4] > 1 {
		return fmt.Errorf("kernel tls: unexpected handshake message (% x) from the client", b[:min(len(b), 8)])
	}
	next, ci, err := c.nextKey(c.clientSecret)
	if err != nil {
		return err
	}
	if err := setKey(c.TCPConn, true, &ci); err != nil {
		return fmt.Errorf("%w (it needs Linux 6.14 or later): setsockopt TLS_RX: %w", ErrKeyUpdate, err)
	}
	c.clientSecret = next
	c.keyUpdates.Add(1)
	if b[4] == 1 { // update_requested
		c.updateOwed.Store(true)
	}
	return nil
}

// nextKey derives the traffic secret after secret (RFC 8446 §7.2) and
// the kernel's crypto_info for it, at sequence 0.
func (c *KernelConn) nextKey(secret []byte) ([]byte, CryptoInfo, error) {
	next, err := hkdfExpandLabel(c.suite.hash, secret, "traffic upd", nil, c.suite.hash().Size())
	if err != nil {
		return nil, CryptoInfo{}, err
	}
	ci, err := info13(c.suite, next, 0)
	return next, ci, err
}

// PrepareWrite is for the relay writing to conn, before each write: it
// sends what the record layer owes the client first (the KeyUpdate a
// client asked for, and the new key it announces).
func (c *KernelConn) PrepareWrite() error {
	if !c.updateOwed.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.updateOwed.Swap(false) {
		return nil
	}
	next, ci, err := c.nextKey(c.serverSecret)
	if err != nil {
		return err
	}
	// update_not_requested, under the old key; then the new key.
	if err := sendRecord(c.rc, recordTypeHandshake, []byte{handshakeKeyUpdate, 0, 0, 1, 0}); err != nil {
		return fmt.Errorf("kernel tls: send key update: %w", err)
	}
	if err := setKey(c.TCPConn, false, &ci); err != nil {
		return fmt.Errorf("%w: setsockopt TLS_TX: %w", ErrKeyUpdate, err)
	}
	c.serverSecret = next
	return nil
}

// closeNotifyTimeout bounds the close_notify's write, as crypto/tls
// bounds its own: the write deadline in force was set for data, and may
// have passed while only the client was sending.
const closeNotifyTimeout = 5 * time.Second

// CloseWrite ends the server's stream: close_notify, then a TCP FIN.
func (c *KernelConn) CloseWrite() error {
	c.mu.Lock()
	c.TCPConn.SetWriteDeadline(time.Now().Add(closeNotifyTimeout))
	err := sendRecord(c.rc, recordTypeAlert, []byte{alertWarning, alertCloseNotify})
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("kernel tls: send close_notify: %w", err)
	}
	return c.TCPConn.CloseWrite()
}

// KeyUpdates counts the client's key updates followed so far.
func (c *KernelConn) KeyUpdates() int64 { return c.keyUpdates.Load() }

// NetConn returns the socket beneath.
func (c *KernelConn) NetConn() net.Conn { return c.TCPConn }

// KernelState is what a KernelConn keeps in userspace, for another process
// to take the connection over (a binary upgrade): the kernel keeps the
// rest with the socket.
type KernelState struct {
	Version     uint16 `json:"version"`
	CipherSuite uint16 `json:"cipher_suite"`
	// The TLS 1.3 traffic secrets in force, for key updates.
	ClientSecret []byte `json:"client_secret,omitempty"`
	ServerSecret []byte `json:"server_secret,omitempty"`
	// UpdateOwed: the client asked for a key update not yet answered.
	UpdateOwed bool `json:"update_owed,omitempty"`
	// KeyUpdates counts the client's key updates followed so far.
	KeyUpdates int64 `json:"key_updates,omitempty"`
}

// State returns what another process needs to run c on (see Adopt). Call
// it only while nothing reads or writes c.
func (c *KernelConn) State() KernelState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return KernelState{Version: c.version, CipherSuite: c.suiteID, ClientSecret: c.clientSecret,
		ServerSecret: c.serverSecret, UpdateOwed: c.updateOwed.Load(), KeyUpdates: c.keyUpdates.Load()}
}

// Adopt runs on conn, a socket whose record layer another process handed
// to the kernel, with the state it passed along.
func Adopt(conn *net.TCPConn, st KernelState) (*KernelConn, error) {
	p, ok := suiteFor(st.Version, st.CipherSuite)
	if !ok {
		return nil, fmt.Errorf("tlsterm: adopt kernel tls: unknown suite %#04x for version %#04x", st.CipherSuite, st.Version)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("tlsterm: adopt kernel tls: %w", err)
	}
	c := &KernelConn{TCPConn: conn, rc: rc, version: st.Version, suite: p, suiteID: st.CipherSuite,
		clientSecret: st.ClientSecret, serverSecret: st.ServerSecret}
	c.updateOwed.Store(st.UpdateOwed)
	c.keyUpdates.Store(st.KeyUpdates)
	return c, nil
}
