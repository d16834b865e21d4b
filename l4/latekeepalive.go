package l4

import (
	"cmp"
	"net"
	"sync"
	"time"
)

// keepAliveAfter is how long a connection to a backend lives before its
// keepalive is turned on. Keepalive only matters to a connection that
// outlives its first idle minute, and its four setsockopt calls
// (SO_KEEPALIVE and the three timings) were a tenth of the system calls
// of a short connection (measured in bench/README.md, "Records of 16
// KiB, and keepalive after a second"). The first probe goes out at most
// this much later than it would have.
const keepAliveAfter = time.Second

// lateKeepAlive turns keepalive on a dialled socket once it has lived for
// keepAliveAfter, unless stopped first.
type lateKeepAlive struct {
	timer *time.Timer
	conn  *net.TCPConn
	cfg   net.KeepAliveConfig
	// once makes the options set at most once, and makes now and stop
	// wait for a timer's apply already under way: a socket handed to
	// another process must have them all before it goes.
	once sync.Once
}

// keepAliveLater arranges the upstream's keepalive on c, a connection
// Dial returned: nil when there is none to set (turned off, not TCP, or
// the Dialer was injected and set its own).
func (u *Upstream) keepAliveLater(c net.Conn) *lateKeepAlive {
	if u.Dialer != nil {
		return nil
	}
	tc, ok := c.(*net.TCPConn)
	ka := u.Socket.keepAlive()
	if !ok || !ka.Enable {
		return nil
	}
	k := &lateKeepAlive{conn: tc, cfg: ka}
	k.timer = time.AfterFunc(cmp.Or(u.keepAliveAfter, keepAliveAfter), k.apply)
	return k
}

// apply sets the options, once; best effort, as net does after a dial: a
// socket that refuses them is dead, or closed already.
func (k *lateKeepAlive) apply() { k.once.Do(func() { k.conn.SetKeepAliveConfig(k.cfg) }) }

// now applies the options at once unless they are set already (or
// stopped), and returns once they are: before the socket leaves for
// another process, where nobody would set them.
func (k *lateKeepAlive) now() {
	if k != nil {
		k.timer.Stop()
		k.apply()
	}
}

// stop lets the timer go when the connection ends before it fires, and
// makes a later apply do nothing.
func (k *lateKeepAlive) stop() {
	if k != nil {
		k.timer.Stop()
		k.once.Do(func() {})
	}
}
