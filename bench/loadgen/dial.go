package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// maxSources bounds the number of -src addresses.
const maxSources = 1 << 16

// dialer opens TCP and TLS connections for both modes: each dial is bounded
// by its own timeout, and local source addresses are used round-robin.
type dialer struct {
	tls     *tls.Config
	timeout time.Duration
	src     []netip.Addr
	next    atomic.Uint64 // index of the next source address
}

// newDialer returns a dialer for TLS 1.3 without certificate verification,
// with server name sni (or, if empty, host, or localhost if host is an IP
// address: benchmark certificates are made for localhost) and the given
// ALPN protocols. With cfg.resume its connections share one session cache,
// so each handshake after the first tickets arrive resumes a session.
func newDialer(cfg config, host string, alpn []string) *dialer {
	sni := cfg.sni
	if sni == "" {
		sni = host
		if _, err := netip.ParseAddr(host); err == nil {
			sni = "localhost"
		}
	}
	tc := &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // self-signed benchmark certificates
		MinVersion:         tls.VersionTLS13,
		NextProtos:         alpn,
		// The key exchange wrk's OpenSSL offers: Go's default would offer
		// hybrid post-quantum groups to the peers that support them, and
		// the terminators would not all do the same work.
		CurvePreferences: []tls.CurveID{tls.X25519},
	}
	if cfg.resume {
		// One server, one entry: the latest ticket.
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	return &dialer{tls: tc, timeout: cfg.dialTimeout, src: cfg.src}
}

// dialTCP connects to addr from the next source address. TCP keep-alives
// are off so that held connections carry no traffic at all.
func (d *dialer) dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	nd := net.Dialer{KeepAlive: -1}
	if len(d.src) > 0 {
		ip := d.src[(d.next.Add(1)-1)%uint64(len(d.src))]
		nd.LocalAddr = &net.TCPAddr{IP: ip.AsSlice()}
	}
	return nd.DialContext(ctx, "tcp", addr)
}

// dialTLS connects to addr and completes the TLS handshake, all within the
// dial timeout.
func (d *dialer) dialTLS(ctx context.Context, addr string) (*tls.Conn, error) {
	return d.dialTLSConfig(ctx, addr, d.tls)
}

// dialTLSCached is dialTLS keeping its sessions in cache, one client's
// own: it offers the ticket cache holds, and stores the ones the server
// sends once the connection reads them (TLS 1.3 tickets follow the
// handshake).
func (d *dialer) dialTLSCached(ctx context.Context, addr string, cache tls.ClientSessionCache) (*tls.Conn, error) {
	tc := d.tls.Clone()
	tc.ClientSessionCache = cache
	return d.dialTLSConfig(ctx, addr, tc)
}

func (d *dialer) dialTLSConfig(ctx context.Context, addr string, tc *tls.Config) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	raw, err := d.dialTCP(ctx, addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, tc)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return c, nil
}

// parseSources parses -src: a comma-separated list of addresses and
// inclusive ranges "first-last" of the same family. "" means none.
func parseSources(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("-src: %w", err)
		}
		last := first
		if isRange {
			if last, err = netip.ParseAddr(strings.TrimSpace(hi)); err != nil {
				return nil, fmt.Errorf("-src: %w", err)
			}
			if first.BitLen() != last.BitLen() || last.Less(first) {
				return nil, fmt.Errorf("-src: bad range %q", part)
			}
		}
		for a := first; ; a = a.Next() {
			if len(out) == maxSources {
				return nil, fmt.Errorf("-src: more than %d addresses", maxSources)
			}
			out = append(out, a)
			if a == last {
				break
			}
		}
	}
	return out, nil
}
