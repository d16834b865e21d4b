package main

import (
	"net/netip"
	"slices"
	"testing"
)

func TestParseSources(t *testing.T) {
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	tests := []struct {
		in   string
		want []netip.Addr
	}{
		{"", nil},
		{"127.0.0.2", addrs("127.0.0.2")},
		{"127.0.0.2-127.0.0.4", addrs("127.0.0.2", "127.0.0.3", "127.0.0.4")},
		{"127.0.0.255-127.0.1.0, 10.0.0.1", addrs("127.0.0.255", "127.0.1.0", "10.0.0.1")},
		{"::1", addrs("::1")},
	}
	for _, tt := range tests {
		got, err := parseSources(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("parseSources(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"x", "127.0.0.3-127.0.0.2", "127.0.0.1-::1", "10.0.0.0-10.1.0.0"} {
		if _, err := parseSources(in); err == nil {
			t.Errorf("parseSources(%q): no error", in)
		}
	}
}
