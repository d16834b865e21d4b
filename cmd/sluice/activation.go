package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"sluice/l4"
)

// activated returns the sockets systemd passed to this process (socket
// activation: LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, from descriptor 3
// on), keyed by the address of the [[listener]] whose name each carries
// (FileDescriptorName= in the .socket unit), for l4.Proxy.Inherit. A
// socket no listener is named for is an error: it would never be served.
func activated(cfg *l4.Config) (map[string]*os.File, error) {
	pid, fds, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(k) // not for the processes sluice starts
	}
	if pid != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q", fds)
	}
	nameList := strings.Split(names, ":")
	files := make(map[string]*os.File, n)
	var errs []string
	for i := range n {
		name := ""
		if i < len(nameList) {
			name = nameList[i]
		}
		f := os.NewFile(uintptr(3+i), name)
		addr := ""
		for _, lc := range cfg.Listeners {
			if lc.Name == name {
				addr = lc.Address
			}
		}
		if addr == "" {
			f.Close()
			errs = append(errs, fmt.Sprintf("socket activation: socket %d is named %q, and no [[listener]] has that name (set FileDescriptorName= to a listener's name)", i, name))
			continue
		}
		files[addr] = f
	}
	if len(errs) > 0 {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return files, nil
}
