package l4

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrHandshakeLimit is the error of a connection that waited in vain for
// a handshake slot (max_handshakes).
var ErrHandshakeLimit = errors.New("l4: max_handshakes reached")

// handshakeSlot takes one of the process's handshake slots, waiting up to
// the queue timeout for one to come free; with no limit it returns at
// once. The slot is given back when the handshake ends. A flood of
// handshakes then costs the CPU of max_handshakes at a time, and the
// connections already relaying keep the rest.
func (c *conn) handshakeSlot(ctx context.Context) error {
	hs := c.srv.handshakes
	if hs == nil {
		return nil
	}
	ok, w := hs.take()
	if ok {
		return nil
	}
	timer := time.NewTimer(c.srv.hsQueue)
	defer timer.Stop()
	select {
	case <-w.ready:
		return nil
	case <-timer.C:
		hs.withdraw(w)
		c.reason = reasonHandshakeLimit
		c.srv.limitLogs.refused(c.srv, reasonHandshakeLimit, c.client, time.Now())
		return fmt.Errorf("%w: no slot within %s", ErrHandshakeLimit, c.srv.hsQueue)
	case <-ctx.Done():
		hs.withdraw(w)
		return ctx.Err()
	}
}
