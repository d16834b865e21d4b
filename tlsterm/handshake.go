package tlsterm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// Handshake runs the server handshake on c, bounded by timeout (and ctx).
// The error says what failed; handshake failures are a client matter and
// callers should log them without alarm.
func Handshake(ctx context.Context, c *tls.Conn, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := c.HandshakeContext(ctx); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("tls handshake: timed out after %s: %w", timeout, ctx.Err())
		}
		return fmt.Errorf("tls handshake: %w", err)
	}
	return nil
}

// Info summarises a finished handshake for routing, logs and PROXY TLVs.
type Info struct {
	SNI     string // server name the client asked for, lower-cased by crypto/tls rules as sent
	ALPN    string // negotiated application protocol, "" if none
	Version string // "TLSv1.2" or "TLSv1.3", as OpenSSL names them (PROXY v2 TLVs use these)
	Cipher  string // IANA name of the cipher suite
	// ClientCN is the subject common name of the verified client
	// certificate, "" if none was presented.
	ClientCN string
	// ClientCert reports that the client presented a certificate that
	// verified.
	ClientCert bool
	Resumed    bool
}

// Describe summarises cs.
func Describe(cs tls.ConnectionState) Info {
	info := Info{
		SNI:     cs.ServerName,
		ALPN:    cs.NegotiatedProtocol,
		Version: VersionName(cs.Version),
		Cipher:  CipherName(cs.CipherSuite),
		Resumed: cs.DidResume,
	}
	// VerifiedChains is empty unless the certificate verified against the
	// configured client CAs.
	if len(cs.VerifiedChains) > 0 && len(cs.PeerCertificates) > 0 {
		info.ClientCert = true
		info.ClientCN = cs.PeerCertificates[0].Subject.CommonName
	}
	return info
}

// CipherName is tls.CipherSuiteName without its cost per call (it lists
// every suite anew, some 300 bytes of garbage per handshake) for the
// suites sluice negotiates.
func CipherName(id uint16) string {
	switch id {
	case tls.TLS_AES_128_GCM_SHA256:
		return "TLS_AES_128_GCM_SHA256"
	case tls.TLS_AES_256_GCM_SHA384:
		return "TLS_AES_256_GCM_SHA384"
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		return "TLS_CHACHA20_POLY1305_SHA256"
	}
	return tls.CipherSuiteName(id)
}

// VersionName names a TLS version the way OpenSSL does ("TLSv1.3").
func VersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}
