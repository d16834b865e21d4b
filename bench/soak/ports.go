package main

import (
	"fmt"
	"net"
)

// freeAddrs picks n loopback addresses that are free now, by listening on
// port 0 and closing. All n are held open together so they differ. Another
// process could take one before it is used: the backend and sluice then
// fail to start with "address in use", and the soak stops saying so.
func freeAddrs(n int) ([]string, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}
