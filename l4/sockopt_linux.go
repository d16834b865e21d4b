package l4

import (
	"fmt"
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
	secs := int((d + time.Second - 1) / time.Second)
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
