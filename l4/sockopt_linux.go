package l4

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// setDeferAccept sets TCP_DEFER_ACCEPT on a listening socket, in whole
// seconds rounded up. Linux turns the seconds into a number of SYN-ACK
// retransmissions, so it reads back as the next 1, 3, 7, 15... seconds.
func setDeferAccept(fd int, d time.Duration) error {
	secs := wholeSeconds(d)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, secs); err != nil {
		return fmt.Errorf("set TCP_DEFER_ACCEPT %d: %w", secs, err)
	}
	return nil
}

// KernelBufferLimits reads net.core.rmem_max and wmem_max; a value it
// cannot read is zero (unknown).
func KernelBufferLimits() BufferLimits {
	read := func(name string) int {
		b, err := os.ReadFile("/proc/sys/net/core/" + name)
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	return BufferLimits{RcvMax: read("rmem_max"), SndMax: read("wmem_max")}
}

// setListenerKeepAlive gives a listening socket the keepalive settings of
// the sockets it will accept: Linux copies SO_KEEPALIVE and the three
// timings into each (and starts its keepalive timer), which saves the four
// setsockopt calls per connection net would make after accept. It reports
// whether accepted sockets inherit them; they do on Linux.
func setListenerKeepAlive(fd int, ka net.KeepAliveConfig) (bool, error) {
	on := 0
	if ka.Enable {
		on = 1
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, on); err != nil {
		return false, fmt.Errorf("set SO_KEEPALIVE %d: %w", on, err)
	}
	if !ka.Enable {
		return true, nil
	}
	for _, o := range []struct {
		name string
		opt  int
		v    int
	}{
		{"TCP_KEEPIDLE", unix.TCP_KEEPIDLE, wholeSeconds(ka.Idle)},
		{"TCP_KEEPINTVL", unix.TCP_KEEPINTVL, wholeSeconds(ka.Interval)},
		{"TCP_KEEPCNT", unix.TCP_KEEPCNT, ka.Count},
	} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, o.opt, o.v); err != nil {
			return false, fmt.Errorf("set %s %d: %w", o.name, o.v, err)
		}
	}
	return true, nil
}

// wholeSeconds rounds d up to whole seconds, as Linux counts these
// options (and net rounds them).
func wholeSeconds(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }
