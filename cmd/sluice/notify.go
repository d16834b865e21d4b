package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// notifier tells systemd (Type=notify) what sluice is doing, through the
// datagram socket named by $NOTIFY_SOCKET: READY=1 once serving,
// RELOADING=1 around a reload, STOPPING=1 while draining, STATUS= lines,
// and MAINPID= when a binary upgrade hands the service to a new process.
// Without $NOTIFY_SOCKET it does nothing. The protocol is one datagram of
// KEY=VALUE lines (sd_notify(3)); a few lines of net beat a dependency.
type notifier struct {
	addr *net.UnixAddr // nil: not under systemd
}

func newNotifier() *notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return &notifier{}
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:] // an abstract socket
	}
	return &notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// send sends the lines in one datagram. Errors are returned for logging:
// systemd going away must not stop sluice.
func (n *notifier) send(lines ...string) error {
	if n.addr == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}

// reloading is RELOADING=1 with the time the reload began, which
// Type=notify-reload wants.
func (n *notifier) reloading() error {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return n.send("RELOADING=1", fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/int64(time.Microsecond)))
}
