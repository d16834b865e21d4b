package l4

import (
	"cmp"
	"net"
	"time"
)

// keepAliveAfter is how long a connection to a backend lives before its
// keepalive is turned on. Keepalive only matters to a connection that
// outlives its first idle minute, and its four setsockopt calls
// (SO_KEEPALIVE and the three timings) were a tenth of the system calls
// of a short connection: a full handshake per request ran 1.5% faster
// without them (bench/README.md, "Keepalive after a second"). The first
// probe goes out at most this much later than it would have.
const keepAliveAfter = time.Second

// lateKeepAlive turns keepalive on a dialled socket once it has lived for
// keepAliveAfter, unless stopped first.
type lateKeepAlive struct {
	timer *time.Timer
	conn  *net.TCPConn
	cfg   net.KeepAliveConfig
}

// keepAliveLater arranges the upstream's keepalive on c, a connection
// Dial returned: nil when there is none to set (turned off, not TCP, or
// the Dialer was injected and set its own).
func (u *Upstream) keepAliveLater(c net.Conn) *lateKeepAlive {
	if u.Dialer != nil {
		return nil
	}
	tc, ok := c.(*net.TCPConn)
	_, ka := u.Socket.keepAlive()
	if !ok || !ka.Enable {
		return nil
	}
	k := &lateKeepAlive{conn: tc, cfg: ka}
	k.timer = time.AfterFunc(cmp.Or(u.keepAliveAfter, keepAliveAfter), k.apply)
	return k
}

// apply sets the options; best effort, as net does after a dial: a socket
// that refuses them is dead, or closed already.
func (k *lateKeepAlive) apply() { k.conn.SetKeepAliveConfig(k.cfg) }

// now applies the options at once if the timer has not yet: before the
// socket leaves for another process, where nobody would.
func (k *lateKeepAlive) now() {
	if k != nil && k.timer.Stop() {
		k.apply()
	}
}

// stop lets the timer go when the connection ends before it fires.
func (k *lateKeepAlive) stop() {
	if k != nil {
		k.timer.Stop()
	}
}
