package splice

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// isTimeout reports whether err is a deadline expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// IsBenign reports whether err is an ordinary way for a connection to end:
// EOF, an unexpected EOF (TLS without close_notify), a reset or broken pipe
// from the peer, a socket the peer already
// disconnected, or use of a connection we closed ourselves. Such errors are
// not worth a warning in a log.
func IsBenign(err error) bool {
	return err == nil ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) ||
		isReset(err)
}

// isReset reports whether err says the peer reset or dropped the
// connection.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ENOTCONN)
}

// benignOrNil returns nil for benign errors and timeouts (the caller records
// those separately) and err otherwise.
func benignOrNil(err error) error {
	if IsBenign(err) || isTimeout(err) {
		return nil
	}
	return err
}

// maxEmptyReads bounds the empty records a kernel TLS source may deliver
// in a row: a client may send some, but a stream of nothing but empty
// records is a peer (or a kernel) that keeps the relay spinning.
const maxEmptyReads = 64

var errEmptyReads = errors.New("splice: kernel tls delivered empty records and nothing else")
