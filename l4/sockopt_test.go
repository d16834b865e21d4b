package l4

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  string // substring of the error; "" for none
	}{
		{in: "65536", want: 65536},
		{in: "0", want: 0},
		{in: "64k", want: 64 << 10},
		{in: "64K", want: 64 << 10},
		{in: "1m", want: 1 << 20},
		{in: "1M", want: 1 << 20},
		{in: "2047m", want: 2047 << 20},
		{in: "", err: `invalid size "": expected a byte count such as 65536, "64k" or "1m"`},
		{in: "k", err: `invalid size "k": expected`},
		{in: "12q", err: `invalid size "12q": expected a byte count such as 65536, "64k" or "1m"`},
		{in: "64kb", err: `invalid size "64kb": expected`},
		{in: "1g", err: `invalid size "1g": expected`},
		{in: "1.5k", err: `invalid size "1.5k": expected`},
		{in: "-1", err: `invalid size "-1": expected`},
		{in: "+64k", err: `invalid size "+64k": expected`},
		{in: " 64k", err: `invalid size " 64k": expected`},
		{in: "2048m", err: `invalid size "2048m": too large: expected at most "64m"`},
		{in: "99999999999999999999", err: `invalid size "99999999999999999999": too large`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("ParseSize(%q): %v", tc.in, err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("ParseSize(%q) = %d, %v; want error %q", tc.in, got, err, tc.err)
			case tc.err == "" && got != tc.want:
				t.Fatalf("ParseSize(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

// TestSizeUnmarshalTOML feeds Size the values the TOML decoder hands it.
func TestSizeUnmarshalTOML(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		want Size
		err  string
	}{
		{name: "integer", in: int64(65536), want: 65536},
		{name: "string", in: "64k", want: 64 << 10},
		{name: "bad string", in: "12q", err: `invalid size "12q": expected a byte count such as 65536, "64k" or "1m"`},
		{name: "negative", in: int64(-1), err: "invalid size -1: must not be negative"},
		{name: "huge", in: int64(1 << 40), err: `invalid size 1099511627776: too large: expected at most "64m"`},
		{name: "float", in: 1.5, err: `invalid size 1.5: expected a byte count such as 65536, "64k" or "1m"`},
		{name: "boolean", in: true, err: `invalid size true: expected`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Size
			err := s.UnmarshalTOML(tc.in)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("UnmarshalTOML(%v): %v", tc.in, err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("UnmarshalTOML(%v) = %d, %v; want error %q", tc.in, s, err, tc.err)
			case tc.err == "" && s != tc.want:
				t.Fatalf("UnmarshalTOML(%v) = %d, want %d", tc.in, s, tc.want)
			}
		})
	}
}

// TestConfigSocketOptions checks how the keys and their defaults become
// SocketOptions.
func TestConfigSocketOptions(t *testing.T) {
	yes, no := true, false
	tlsOn := &TLSConfig{}
	for _, tc := range []struct {
		name string
		l    ListenerConfig
		want SocketOptions
	}{
		{name: "plain: nothing deferred", l: ListenerConfig{}, want: SocketOptions{}},
		{name: "TLS: deferred for the handshake timeout", l: ListenerConfig{TLS: tlsOn},
			want: SocketOptions{DeferAccept: DefaultHandshakeTimeout}},
		{name: "TLS with its own handshake timeout", l: ListenerConfig{TLS: tlsOn, HandshakeTimeout: Duration{2500 * time.Millisecond}},
			want: SocketOptions{DeferAccept: 2500 * time.Millisecond}},
		{name: "PROXY: deferred for the proxy timeout", l: ListenerConfig{AcceptProxy: true},
			want: SocketOptions{DeferAccept: DefaultProxyTimeout}},
		{name: "PROXY and TLS: the PROXY header comes first", l: ListenerConfig{TLS: tlsOn, AcceptProxy: true, ProxyTimeout: Duration{3 * time.Second}},
			want: SocketOptions{DeferAccept: 3 * time.Second}},
		{name: "TLS, deferred = false", l: ListenerConfig{TLS: tlsOn, Deferred: &no}, want: SocketOptions{}},
		{name: "plain, deferred = true", l: ListenerConfig{Deferred: &yes},
			want: SocketOptions{DeferAccept: DefaultHandshakeTimeout}},
		{name: "nodelay = true", l: ListenerConfig{SocketConfig: SocketConfig{NoDelay: &yes}}, want: SocketOptions{}},
		{name: "nodelay = false", l: ListenerConfig{SocketConfig: SocketConfig{NoDelay: &no}}, want: SocketOptions{Nagle: true}},
		{name: "keepalive", l: ListenerConfig{SocketConfig: SocketConfig{KeepAlive: &Duration{30 * time.Second}}}, want: SocketOptions{KeepAlive: 30 * time.Second}},
		{name: "keepalive = 0s: off", l: ListenerConfig{SocketConfig: SocketConfig{KeepAlive: &Duration{}}}, want: SocketOptions{KeepAlive: -1}},
		{name: "keepalive timing", l: ListenerConfig{SocketConfig: SocketConfig{KeepAliveInterval: Duration{5 * time.Second}, KeepAliveCount: 9}},
			want: SocketOptions{KeepAliveInterval: 5 * time.Second, KeepAliveCount: 9}},
		{name: "buffers", l: ListenerConfig{SocketConfig: SocketConfig{RcvBuf: 64 << 10, SndBuf: 1 << 20}}, want: SocketOptions{RcvBuf: 64 << 10, SndBuf: 1 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.l.socketOptions(); got != tc.want {
				t.Errorf("listener: got %+v, want %+v", got, tc.want)
			}
			// An upstream has the same keys but deferred.
			u := UpstreamConfig{SocketConfig: tc.l.SocketConfig}
			want := tc.want
			want.DeferAccept = 0
			if got := u.socketOptions(); got != want {
				t.Errorf("upstream: got %+v, want %+v", got, want)
			}
		})
	}
}

func TestValidateSocketOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string // "path: message" of each error; none for a valid config
	}{
		{name: "unset", edit: func(*Config) {}},
		{name: "in range", edit: func(c *Config) {
			c.Listeners[0].RcvBuf, c.Listeners[0].SndBuf = MinBufferSize, MaxBufferSize
			c.Listeners[0].KeepAlive = &Duration{time.Second}
			c.Upstreams[0].RcvBuf, c.Upstreams[0].SndBuf = 64<<10, 1<<20
			c.Upstreams[0].KeepAlive = &Duration{maxKeepAlive}
			c.Listeners[0].KeepAliveInterval, c.Listeners[0].KeepAliveCount = Duration{time.Second}, 1
			c.Upstreams[0].KeepAliveInterval, c.Upstreams[0].KeepAliveCount = Duration{maxKeepAlive}, maxKeepAliveCount
		}},
		{name: "keepalive 0s turns it off", edit: func(c *Config) {
			c.Listeners[0].KeepAlive, c.Upstreams[0].KeepAlive = &Duration{}, &Duration{}
		}},
		{name: "buffers out of range", edit: func(c *Config) {
			c.Listeners[0].RcvBuf = 1023
			c.Listeners[0].SndBuf = -1
			c.Upstreams[0].RcvBuf = MaxBufferSize + 1
			c.Upstreams[0].SndBuf = 64
		}, want: []string{
			`upstream[0].rcvbuf: 67108865 bytes is out of range: expected a size from "1k" to "64m", such as 65536, "64k" or "1m" (unset: the kernel default)`,
			`upstream[0].sndbuf: 64 bytes is out of range: expected a size from "1k" to "64m"`,
			`listener[0].rcvbuf: 1023 bytes is out of range`,
			`listener[0].sndbuf: -1 bytes is out of range`,
		}},
		{name: "keepalive out of range", edit: func(c *Config) {
			c.Listeners[0].KeepAlive = &Duration{500 * time.Millisecond}
			c.Upstreams[0].KeepAlive = &Duration{10 * time.Hour}
		}, want: []string{
			`upstream[0].keepalive: 10h0m0s is out of range: expected from "1s" to "9h6m7s" (the kernel's limit), or "0s" to turn keepalive off`,
			`listener[0].keepalive: 500ms is out of range: expected from "1s" to "9h6m7s"`,
		}},
		{name: "keepalive timing out of range", edit: func(c *Config) {
			c.Listeners[0].KeepAliveInterval, c.Listeners[0].KeepAliveCount = Duration{100 * time.Millisecond}, 128
			c.Upstreams[0].KeepAliveInterval, c.Upstreams[0].KeepAliveCount = Duration{10 * time.Hour}, -1
		}, want: []string{
			`upstream[0].keepalive_interval: 10h0m0s is out of range: expected from "1s" to "9h6m7s" (the kernel's limit); unset: 15s`,
			`upstream[0].keepalive_count: -1 is out of range: expected from 1 to 127 (the kernel's limit); unset: 4`,
			`listener[0].keepalive_interval: 100ms is out of range`,
			`listener[0].keepalive_count: 128 is out of range`,
		}},
		{name: "keepalive timing with keepalive off", edit: func(c *Config) {
			c.Listeners[0].KeepAlive, c.Listeners[0].KeepAliveCount = &Duration{}, 3
			c.Upstreams[0].KeepAlive, c.Upstreams[0].KeepAliveInterval = &Duration{}, Duration{time.Second}
		}, want: []string{
			`upstream[0].keepalive: "0s" turns keepalive off, so keepalive_interval and keepalive_count would have no effect`,
			`listener[0].keepalive: "0s" turns keepalive off`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{
				Listeners: []ListenerConfig{{Address: "127.0.0.1:0", Routes: []RouteConfig{{Upstream: "app"}}}},
				Upstreams: []UpstreamConfig{{Name: "app", Servers: []string{"127.0.0.1:9000"}}},
			}
			tc.edit(c)
			var got []string
			for _, err := range flattenErrors(c.Validate()) {
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Errorf("%v is not a *FieldError", err)
				}
				got = append(got, err.Error())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("error %d:\n got %q\nwant %q", i, got[i], w)
				}
			}
		})
	}
}

// flattenErrors lists the errors joined in err.
func flattenErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestWarnBufferCaps(t *testing.T) {
	lim := BufferLimits{RcvMax: 212992, SndMax: 4 << 20}
	for _, tc := range []struct {
		name string
		o    SocketOptions
		lim  BufferLimits
		want []string // keys warned about
	}{
		{"unset", SocketOptions{}, lim, nil},
		{"within", SocketOptions{RcvBuf: 212992, SndBuf: 1 << 20}, lim, nil},
		{"rcvbuf over", SocketOptions{RcvBuf: 1 << 20}, lim, []string{"upstream[2].rcvbuf"}},
		{"both over", SocketOptions{RcvBuf: 1 << 20, SndBuf: 8 << 20}, lim, []string{"upstream[2].rcvbuf", "upstream[2].sndbuf"}},
		{"limits unknown", SocketOptions{RcvBuf: 64 << 20}, BufferLimits{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&buf, nil))
			warnBufferCaps(logger, "upstream[2]", tc.o, tc.lim)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if buf.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tc.want) {
				t.Fatalf("logged %q, want warnings for %q", lines, tc.want)
			}
			for i, k := range tc.want {
				if !strings.Contains(lines[i], "level=WARN") || !strings.Contains(lines[i], "key="+k) {
					t.Errorf("line %q, want a warning naming %s", lines[i], k)
				}
			}
		})
	}
}
