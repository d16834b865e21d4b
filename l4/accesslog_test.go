package l4

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"short", "localhost", 253, "localhost"},
		{"exact", "abcd", 4, "abcd"},
		{"ascii", "abcdefgh", 4, "abcd…[+4 bytes]"},
		{"rune boundary", "ééé", 3, "é…[+4 bytes]"}, // é is 2 bytes: cut at 2, not 3
		{"rune at the cut", "aéé", 3, "aé…[+2 bytes]"},
		{"four-byte rune", "😀😀", 6, "😀…[+4 bytes]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := clip(tc.in, tc.max)
			if got != tc.want {
				t.Errorf("clip(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("clip(%q, %d) = %q: invalid UTF-8", tc.in, tc.max, got)
			}
		})
	}
}

// bigHello is a TLS 1.2 ClientHello for sni offering n cipher suites that
// no server supports (0x2000 and up), split into records of at most 16 KiB.
// crypto/tls clients cannot be made to offer unknown suites.
func bigHello(sni string, n int) []byte {
	body := []byte{0x03, 0x03}               // client_version: TLS 1.2, no supported_versions
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session_id
	body = binary.BigEndian.AppendUint16(body, uint16(2*n))
	for i := range n {
		body = binary.BigEndian.AppendUint16(body, uint16(0x2000+i))
	}
	body = append(body, 1, 0) // compression_methods: null
	// extensions: server_name only.
	name := []byte(sni)
	ext := binary.BigEndian.AppendUint16(nil, 0x0000)
	ext = binary.BigEndian.AppendUint16(ext, uint16(2+1+2+len(name)))
	ext = binary.BigEndian.AppendUint16(ext, uint16(1+2+len(name)))
	ext = append(ext, 0) // host_name
	ext = binary.BigEndian.AppendUint16(ext, uint16(len(name)))
	ext = append(ext, name...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(ext)))
	body = append(body, ext...)

	msg := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	var out []byte
	for len(msg) > 0 {
		k := min(len(msg), 16384)
		out = append(out, 0x16, 0x03, 0x01, byte(k>>8), byte(k))
		out = append(out, msg[:k]...)
		msg = msg[k:]
	}
	return out
}

// TestAccessLineOfHugeHelloIsBounded: crypto/tls quotes every suite a
// client offered in its handshake error; the access line must not.
func TestAccessLineOfHugeHelloIsBounded(t *testing.T) {
	w := newWorld(t)
	_, addrs := w.serve(w.simple(w.backend(echo).addr()))
	c, err := net.DialTimeout("tcp", addrs[0], testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	hello := bigHello("localhost", 30_000)
	if _, err := c.Write(hello); err != nil {
		t.Fatalf("write a %d-byte hello: %v", len(hello), err)
	}
	io.Copy(io.Discard, c) // an alert, then the close

	line := w.waitLog("msg=access", "reason=handshake", "client offered")
	if len(line) > 2048 {
		t.Errorf("access line of %d bytes for a %d-byte hello: %.300s…", len(line), len(hello), line)
	}
	m := regexp.MustCompile(`…\[\+(\d+) bytes\]`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("access line does not mark the cut: %s", line)
	}
	// Five characters per suite were cut: the test really made crypto/tls
	// quote the whole offer.
	if n, _ := strconv.Atoi(m[1]); n < 100_000 {
		t.Errorf("%d bytes cut from the error, want the 30,000 suites' worth", n)
	}
}

var suppressedAttr = regexp.MustCompile(`\bsuppressed=(\d+)`)

// failHandshakes makes n connections to addr that fail their handshake
// (plain HTTP on a TLS listener), one after the other.
func failHandshakes(t *testing.T, addr string, n int) {
	t.Helper()
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(testTimeout))
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		if _, err := io.Copy(io.Discard, c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("conn %d was not closed: %v", i, err)
			}
		}
		c.Close()
	}
}

// countReason counts, in logs, the access lines of reason and the
// suppressed lines of that reason that other lines report.
func countReason(logs, reason string) (lines, suppressed int) {
	for _, l := range strings.Split(logs, "\n") {
		if !strings.Contains(l, "reason="+reason) {
			continue
		}
		if strings.Contains(l, "msg=access ") {
			lines++
		}
		if m := suppressedAttr.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			suppressed += n
		}
	}
	return lines, suppressed
}

// TestFailedHandshakesRateLimited: a burst of 100 failed handshakes on one
// listener logs the budget in full and counts the rest; the counts, on the
// next line of the kind or on a line of their own when the burst stops,
// add up to 100.
func TestFailedHandshakesRateLimited(t *testing.T) {
	w := newWorld(t)
	_, addrs := w.serve(w.simple(w.backend(echo).addr()))
	const total = 100
	start := time.Now()
	failHandshakes(t, addrs[0], total)
	burst := time.Since(start)

	// Wait for the counts to add up: the last ones come from the flush
	// timer, at the end of the interval.
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	var lines, suppressed int
	for {
		logs, changed := w.logs.snapshot()
		lines, suppressed = countReason(logs, "handshake")
		if lines+suppressed >= total {
			break
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("%d access lines and %d suppressed, want %d in all", lines, suppressed, total)
		}
	}
	if lines+suppressed != total {
		t.Errorf("%d access lines and %d suppressed, want %d in all", lines, suppressed, total)
	}
	// The budget of each interval the burst spanned, and one more for the
	// lines logged just after the last client saw its close.
	if max := failBurst * (2 + int(burst/failInterval)); lines > max {
		t.Errorf("%d access lines for %d failed handshakes in %v, want at most %d", lines, total, burst, max)
	}
	if suppressed == 0 {
		t.Error("nothing was suppressed")
	}
}

// TestAccessLineTimesAndOpenLine: the access line says whether the session
// resumed and how long the handshake and the connect took; with LogOpen,
// a line with the same fields comes when the relay starts, before the
// connection ends.
func TestAccessLineTimesAndOpenLine(t *testing.T) {
	w := newWorld(t)
	cfg := w.simple(w.backend(echo).addr())
	cfg.Listeners[0].LogOpen = true
	_, addrs := w.serve(cfg)
	c := w.mustDialTLS(addrs[0], nil)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	open := w.waitLog("msg=open", "listener=test", "resumed=false", "route=default", "server=")
	for _, re := range []string{` handshake=[0-9.]+[µm]?s `, ` connect=[0-9.]+[µm]?s`, ` conn=[0-9a-f]+-[0-9]+ `} {
		if !regexp.MustCompile(re).MatchString(open) {
			t.Errorf("open line lacks %s: %s", re, open)
		}
	}
	if strings.Contains(open, "bytes_in") || strings.Contains(open, "reason=") {
		t.Errorf("open line reports an end: %s", open)
	}
	if strings.Contains(w.logs.String(), "msg=access") {
		t.Fatalf("an access line before the connection ended:\n%s", w.logs.String())
	}
	c.Close()
	access := w.waitLog("msg=access", "listener=test", "reason=client_closed")
	for _, re := range []string{` resumed=false `, ` handshake=[0-9.]+[µm]?s `, ` connect=[0-9.]+[µm]?s `, ` bytes_in=4 bytes_out=4 `} {
		if !regexp.MustCompile(re).MatchString(access) {
			t.Errorf("access line lacks %s: %s", re, access)
		}
	}
}

// TestSuppressedCountedAtShutdown: the count of access lines suppressed in
// the last second is logged before Shutdown returns, so that a process
// exiting right after it does not lose it.
func TestSuppressedCountedAtShutdown(t *testing.T) {
	w := newWorld(t)
	p, addrs := w.serve(w.simple(w.backend(echo).addr()))
	const total = 3 * failBurst
	failHandshakes(t, addrs[0], total)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	logs, _ := w.logs.snapshot()
	lines, suppressed := countReason(logs, "handshake")
	if lines+suppressed != total {
		t.Errorf("when Shutdown returned: %d access lines and %d suppressed, want %d in all", lines, suppressed, total)
	}
}
