package l4

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"sluice/tlsterm"
)

// Errors for PROXY protocol ingress.
var (
	ErrUntrustedProxy = errors.New("l4: connection from a peer not in trusted_proxies")
	ErrNoProxyHeader  = errors.New("l4: no PROXY header")
)

// errDatagramHeader refuses a PROXY header for a datagram connection.
var errDatagramHeader = errors.New("it announces a datagram connection (UDP or unix datagram), and this listener takes streams")

// readProxyHeader reads the PROXY v1 or v2 header a trusted load balancer
// must send first, within timeout. It returns the header and a copy of the
// bytes the reader buffered past it: the start of the client's stream.
func readProxyHeader(raw net.Conn, timeout time.Duration) (*proxyproto.Header, []byte, error) {
	cr := &countingReader{r: raw}
	br := bufio.NewReader(cr)
	// Not proxyproto.ReadHeaderTimeout: it reports a timeout as
	// ErrNoProxyProtocol, the error for a peer that sends something else
	// first (a ClientHello), and the log must tell the two apart.
	raw.SetReadDeadline(time.Now().Add(timeout))
	h, err := proxyproto.Read(br)
	raw.SetReadDeadline(time.Time{})
	var ne net.Error
	switch {
	case err != nil && cr.n == 0 && cr.err != nil && hungUp(cr.err):
		return nil, nil, fmt.Errorf("read PROXY header: %w", errHungUp)
	case errors.As(err, &ne) && ne.Timeout():
		return nil, nil, fmt.Errorf("%w within %s", ErrNoProxyHeader, timeout)
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		return nil, nil, fmt.Errorf("%w: the connection starts with other data or was closed", ErrNoProxyHeader)
	case err != nil:
		return nil, nil, fmt.Errorf("read PROXY header: %w", err)
	}
	if h.Command.IsProxy() && h.TransportProtocol.IsDatagram() {
		// A stream announced as UDP is a proxy's mistake or a forgery;
		// taken as it is, it would reach backends as UDP in the header
		// sluice sends and escape the per-client limits, which count IPs
		// of streams.
		return nil, nil, fmt.Errorf("read PROXY header: %w", errDatagramHeader)
	}
	var rest []byte
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		rest = bytes.Clone(b)
	}
	return h, rest, nil
}

// trusted reports whether addr may send PROXY headers. Peers on unix
// sockets are trusted: the socket's permissions are the access control.
func trusted(addr net.Addr, prefixes []netip.Prefix) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		_, unix := addr.(*net.UnixAddr)
		return unix
	}
	// Prefix.Contains never matches a zoned address (fe80::1%eth0).
	ip := ta.AddrPort().Addr().Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// proxyHeader formats the PROXY header sent to a backend: src is the client
// as sluice knows it (from a PROXY header it received, else the peer), dst
// the address the client connected to. Version 2 carries TLVs: the SNI as
// PP2_TYPE_AUTHORITY, the negotiated ALPN, PP2_TYPE_UNIQUE_ID (the
// connection id of the access log) and PP2_TYPE_SSL with the TLS version,
// cipher and the verified client certificate's CN. tls is nil for plain
// listeners.
//
// hello is the ClientHello of a passthrough connection (tls is nil then):
// its server name goes out as PP2_TYPE_AUTHORITY, with no SSL TLV, since
// sluice did not terminate that TLS.
func proxyHeader(version int, src, dst net.Addr, tls *tlsterm.Info, hello *tlsterm.Hello, id string) ([]byte, error) {
	h := proxyproto.HeaderProxyFromAddrs(byte(version), src, dst)
	if version == 2 {
		tlvs := []proxyproto.TLV{{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: []byte(id)}}
		if hello != nil && hello.ServerName != "" {
			tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(hello.ServerName)})
		}
		if tls != nil {
			if tls.SNI != "" {
				tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(tls.SNI)})
			}
			if tls.ALPN != "" {
				tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(tls.ALPN)})
			}
			ssl := tlvparse.PP2SSL{
				Client: tlvparse.PP2_BITFIELD_CLIENT_SSL,
				Verify: 1, // non-zero: no verified client certificate
				TLV: []proxyproto.TLV{
					{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(tls.Version)},
					{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(tls.Cipher)},
				},
			}
			if tls.ClientCert {
				ssl.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN
				ssl.Verify = 0
				if tls.ClientCN != "" {
					ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte(tls.ClientCN)})
				}
			}
			t, err := ssl.Marshal()
			if err != nil {
				return nil, fmt.Errorf("format PROXY SSL TLV: %w", err)
			}
			tlvs = append(tlvs, t)
		}
		if err := h.SetTLVs(tlvs); err != nil {
			return nil, fmt.Errorf("format PROXY TLVs: %w", err)
		}
	}
	b, err := h.Format()
	if err != nil {
		return nil, fmt.Errorf("format PROXY header: %w", err)
	}
	return b, nil
}
