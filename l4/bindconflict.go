package l4

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
)

// bindAddr is a listen address as bind(2) will see it, for telling which
// two listeners cannot both bind.
type bindAddr struct {
	unix string     // socket path of "unix:/path"; "" for TCP
	name string     // a host name, not resolved; or ""
	ip   netip.Addr // unmapped, as Go binds "[::ffff:10.0.0.1]" as 10.0.0.1
	port int
}

// parseBindAddr reads a listen address that checkListenAddr accepted. It
// reports false for port 0 (any free port), which never clashes. A host
// name is kept as it is: resolving it is for listen time.
func parseBindAddr(a string) (bindAddr, bool) {
	if path, ok := strings.CutPrefix(a, "unix:"); ok {
		if !strings.HasPrefix(path, "@") { // abstract names are not paths
			path = filepath.Clean(path)
		}
		return bindAddr{unix: path}, true
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return bindAddr{}, false
	}
	n, err := net.LookupPort("tcp", port)
	if err != nil || n == 0 {
		return bindAddr{}, false
	}
	ip := netip.IPv6Unspecified()
	if host != "" {
		if ip, err = netip.ParseAddr(host); err != nil {
			return bindAddr{name: strings.ToLower(host), port: n}, true
		}
	}
	return bindAddr{ip: ip.Unmap(), port: n}, true
}

// conflict explains why b cannot bind once a is bound, or returns "".
//
// Go listens on an unspecified address, "0.0.0.0:443" as much as "[::]:443"
// or ":443", with one dual-stack socket, so any of them takes the port on
// every address, IPv4 and IPv6 alike: "0.0.0.0:443" even clashes with
// "[::1]:443", and with "localhost:443" whatever that resolves to. Two
// specific addresses clash only when equal; a host name and an address
// are not compared.
//
// SO_REUSEPORT on both sockets lifts every TCP clash (the kernel then gives
// a connection to the listener whose address matches it most closely, and
// spreads those on one address among them), so reuse_port on both is
// allowed; on one alone it is not enough.
func conflict(a, b bindAddr, bothReusePort bool) string {
	if a.unix != "" || b.unix != "" {
		if a.unix != b.unix {
			return ""
		}
		return "the same socket path: the second listener would find it in use (reuse_port does not apply to unix sockets)"
	}
	if a.port != b.port || bothReusePort {
		return ""
	}
	const inUse = `the second bind would fail with "address already in use" (set reuse_port = true on both to share the port)`
	switch {
	case a.name == b.name && a.ip == b.ip:
		return "the same address: " + inUse
	case a.ip.IsUnspecified() || b.ip.IsUnspecified():
		return fmt.Sprintf("the unspecified address takes port %d on every address, IPv4 and IPv6 (Go listens dual-stack): %s", a.port, inUse)
	}
	return ""
}

// checkBindConflicts reports each listener whose address cannot be bound
// beside an earlier one's, naming both keys.
func checkBindConflicts(listeners []ListenerConfig, es *errs) {
	type bound struct {
		addr      bindAddr
		reusePort bool
		index     int
	}
	var seen []bound
	for i, l := range listeners {
		if checkListenAddr(l.Address) != nil {
			continue // reported as invalid
		}
		ba, ok := parseBindAddr(l.Address)
		if !ok {
			continue
		}
		for _, prev := range seen {
			if why := conflict(prev.addr, ba, prev.reusePort && l.ReusePort); why != "" {
				es.add(fmt.Sprintf("listener[%d].address", i), "%q cannot listen beside listener[%d].address = %q: %s",
					l.Address, prev.index, listeners[prev.index].Address, why)
				break
			}
		}
		seen = append(seen, bound{addr: ba, reusePort: l.ReusePort, index: i})
	}
}
