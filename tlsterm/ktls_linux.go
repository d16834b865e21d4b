package tlsterm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// setsockopt and cmsg names of include/uapi/linux/tls.h, which x/sys/unix
// lacks (it has SOL_TLS, 282, and TCP_ULP).
const (
	tlsTX            = 1
	tlsRX            = 2
	tlsSetRecordType = 1 // sendmsg cmsg: the record type of this message
	tlsGetRecordType = 2 // recvmsg cmsg: the record type of what was read
)

// ProbeKernel finds out what this kernel's TLS can take: whether the ULP
// attaches, which version and cipher pairs install in both directions, and
// whether TLS 1.3 keys can be replaced. It opens loopback connections, so
// call it once at startup and keep the answer. Installing is not all or
// nothing (a TLS_TX that succeeded cannot be undone), so a hand-over is
// only tried for pairs the probe installed.
func ProbeKernel() *KernelTLS {
	k := &KernelTLS{ciphers: make(map[cipherKey]error)}
	k.Err = probeOne(func(c *net.TCPConn) error { return attachULP(c) })
	if k.Err != nil {
		return k
	}
	for _, version := range []uint16{0x0303, 0x0304} {
		for _, ct := range []uint16{tlsCipherAESGCM128, tlsCipherAESGCM256, tlsCipherChaCha20Poly1305} {
			ci := probeInfo(version, ct)
			rekey := false
			err := probeOne(func(c *net.TCPConn) error {
				if err := InstallKernelTLS(c, &KernelKeys{TX: ci, RX: ci}); err != nil {
					return err
				}
				// A second TLS_RX is a rekey: EBUSY before Linux 6.14.
				rekey = version == 0x0304 && setsockopt(c, unix.SOL_TLS, tlsRX, ci.Marshal()) == nil
				return nil
			})
			k.ciphers[cipherKey{version, ct}] = err
			k.Rekey = k.Rekey || rekey
		}
	}
	return k
}

// probeInfo is a crypto_info with a zero key, for probing.
func probeInfo(version, cipherType uint16) CryptoInfo {
	ci := CryptoInfo{Version: version, CipherType: cipherType, IV: make([]byte, 8), Key: make([]byte, 16), Salt: make([]byte, 4)}
	switch cipherType {
	case tlsCipherAESGCM256:
		ci.Key = make([]byte, 32)
	case tlsCipherChaCha20Poly1305:
		ci.IV, ci.Key, ci.Salt = make([]byte, 12), make([]byte, 32), nil
	}
	return ci
}

// probeOne runs f on the client end of a fresh loopback connection.
func probeOne(f func(*net.TCPConn) error) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if ln, err = net.Listen("tcp", "[::1]:0"); err != nil {
			return fmt.Errorf("probe kernel tls: listen: %w", err)
		}
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("probe kernel tls: dial: %w", err)
	}
	defer c.Close()
	// The kernel finished the TCP handshake before Dial returned, so this
	// does not block; the ULP is only accepted on an established socket.
	s, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("probe kernel tls: accept: %w", err)
	}
	defer s.Close()
	return f(c.(*net.TCPConn))
}

// ProbeKernelTLS reports whether the kernel attaches its TLS ULP to a TCP
// connection: nil if it does, else an error wrapping ErrNoKernelTLS and
// the errno.
func ProbeKernelTLS() error {
	return probeOne(func(c *net.TCPConn) error { return attachULP(c) })
}

// InstallKernelTLS attaches the TLS ULP to conn's socket and gives the
// kernel k.TX and then k.RX. Until TLS_TX succeeds the socket is unchanged
// for userspace (an error wraps ErrNoKernelTLS: fall back); once it has,
// an error wraps ErrKernelTLSHalfInstalled and the socket must be closed.
func InstallKernelTLS(conn syscall.Conn, k *KernelKeys) error {
	if err := attachULP(conn); err != nil {
		return err
	}
	if err := setsockopt(conn, unix.SOL_TLS, tlsTX, k.TX.Marshal()); err != nil {
		return fmt.Errorf("%w: setsockopt TLS_TX: %w", ErrNoKernelTLS, err)
	}
	if err := setsockopt(conn, unix.SOL_TLS, tlsRX, k.RX.Marshal()); err != nil {
		return fmt.Errorf("%w: setsockopt TLS_RX: %w", ErrKernelTLSHalfInstalled, err)
	}
	return nil
}

func attachULP(conn syscall.Conn) error {
	err := setsockopt(conn, unix.SOL_TCP, unix.TCP_ULP, []byte("tls"))
	switch {
	case errors.Is(err, unix.ENOENT):
		// The tls module is not loaded, and the kernel loads it on demand
		// only for callers with CAP_NET_ADMIN (or it has no CONFIG_TLS).
		return fmt.Errorf("%w: setsockopt TCP_ULP tls: %w (tls module not loaded)", ErrNoKernelTLS, err)
	case err != nil:
		return fmt.Errorf("%w: setsockopt TCP_ULP tls: %w", ErrNoKernelTLS, err)
	}
	return nil
}

// setsockopt passes val with exactly its length, which the kernel checks
// against the struct size.
func setsockopt(conn syscall.Conn, level, opt int, val []byte) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("syscall conn: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), level, opt, string(val))
	}); err != nil {
		return fmt.Errorf("control: %w", err)
	}
	return serr
}

// sendRecord sends b as one record of type typ through the kernel: sendmsg
// with a SOL_TLS/TLS_SET_RECORD_TYPE cmsg (write(2) only ever sends
// application data). It waits, within the write deadline, while the
// socket's buffer is full.
func sendRecord(rc syscall.RawConn, typ byte, b []byte) error {
	// struct cmsghdr: a size_t length, then level and type as ints.
	oob := make([]byte, unix.CmsgSpace(1))
	lenSize := unix.SizeofCmsghdr - 8
	if lenSize == 8 {
		binary.NativeEndian.PutUint64(oob, uint64(unix.CmsgLen(1)))
	} else {
		binary.NativeEndian.PutUint32(oob, uint32(unix.CmsgLen(1)))
	}
	binary.NativeEndian.PutUint32(oob[lenSize:], unix.SOL_TLS)
	binary.NativeEndian.PutUint32(oob[lenSize+4:], tlsSetRecordType)
	oob[unix.CmsgLen(0)] = typ
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		for {
			_, serr = unix.SendmsgN(int(fd), b, oob, nil, 0)
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("sendmsg: %w", serr)
	}
	return nil
}

// recvRecord reads the record at the head of the socket's queue into buf,
// and returns its type from the SOL_TLS / TLS_GET_RECORD_TYPE cmsg. One
// recvmsg never mixes record types. Unless wait is set, n is 0 and err nil
// when nothing is queued.
func recvRecord(rc syscall.RawConn, buf []byte, wait bool) (typ byte, n int, err error) {
	oob := make([]byte, unix.CmsgSpace(1))
	var oobn int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN || !wait
			}
		}
	}); err != nil {
		return 0, 0, err
	}
	switch {
	case rerr == unix.EAGAIN:
		return 0, 0, nil
	case rerr != nil:
		return 0, 0, fmt.Errorf("recvmsg: %w", rerr)
	case n == 0 && oobn == 0:
		return 0, 0, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return 0, 0, fmt.Errorf("recvmsg cmsg: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_TLS && m.Header.Type == tlsGetRecordType && len(m.Data) == 1 {
			return m.Data[0], n, nil
		}
	}
	return 0, n, fmt.Errorf("recvmsg: no record type among %d cmsgs", len(msgs))
}

// readFailure sorts out the error that stopped a read or splice from a
// kernel TLS socket: control=true when a record that is not application
// data is waiting (splice says EINVAL, read EIO, and the record stays
// queued for recvmsg); otherwise the error to end the stream with, named
// for what the kernel means by it.
func readFailure(err error) (control bool, _ error) {
	switch {
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EIO):
		return true, nil
	case errors.Is(err, unix.EBADMSG):
		return false, fmt.Errorf("kernel tls: a client record failed authentication: %w", err)
	case errors.Is(err, unix.EMSGSIZE):
		return false, fmt.Errorf("kernel tls: a client record is too long: %w", err)
	case errors.Is(err, unix.EKEYEXPIRED):
		return false, fmt.Errorf("kernel tls: read after a key update whose new key was not set: %w", err)
	}
	return false, err
}

// setKey replaces one direction's key (a TLS 1.3 key update).
func setKey(conn syscall.Conn, rx bool, ci *CryptoInfo) error {
	opt := tlsTX
	if rx {
		opt = tlsRX
	}
	return setsockopt(conn, unix.SOL_TLS, opt, ci.Marshal())
}
