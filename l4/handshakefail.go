package l4

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
)

// handshakeFailure sorts a failed handshake for
// sluice_tls_handshake_failures_total: the client was too slow, hung up,
// offered nothing sluice accepts (protocols, versions, ciphers), or its
// certificate was missing or did not verify; or sluice shed it, the CPU
// behind (no_turn).
func handshakeFailure(err error) string {
	var ne net.Error
	var ve *tls.CertificateVerificationError
	msg := err.Error()
	switch {
	case errors.Is(err, ErrNoTurn):
		return hsFailNoTurn
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return hsFailTimeout
	case strings.Contains(msg, errNoALPN):
		return hsFailNoALPN
	case hungUp(err), errors.Is(err, io.ErrUnexpectedEOF):
		// The client hung up, between records or in the middle of one.
		return hsFailClosed
	case errors.As(err, &ve),
		// crypto/tls's errors for a client certificate that is missing
		// or cannot be parsed have no type of their own.
		strings.Contains(msg, "client didn't provide a certificate"),
		strings.Contains(msg, "client certificate"):
		return hsFailClientCert
	}
	return hsFailProtocol
}
