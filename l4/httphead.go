package l4

import (
	"bytes"
	"errors"
	"io"
)

// maxHeadBytes bounds the peek (8 KiB).
const maxHeadBytes = 8 << 10

// maxEmptyReads bounds consecutive (0, nil) reads, as bufio does, so that a
// misbehaving reader cannot make readRequestHead spin forever.
const maxEmptyReads = 100

// errInvalidRead reports a reader that returned an impossible byte count.
var errInvalidRead = errors.New("l4: reader returned invalid count")

// readRequestHead reads from r into buf (its len is the bound; callers pass
// make([]byte, maxHeadBytes)) until it can decide whether the stream starts with
// an HTTP/1.x WebSocket upgrade request head. It returns the number of bytes
// read into buf (all of which the caller forwards), whether it is a websocket
// upgrade, and the read error that stopped it, if any (io.EOF, a timeout set by
// the caller via a read deadline, etc.). It stops reading as soon as the answer
// is known: a complete head (ends with CRLFCRLF, bare LF tolerated per RFC 9112 §2.2),
// bytes that cannot be an HTTP request line (decide on the very first bytes
// where possible, e.g. a TLS record or binary garbage must not wait for more data),
// or buf full (oversize head: not a match). It never reads past the end of the head
// on purpose beyond what one Read returned.
//
// Only a request line starting with "GET " can be a handshake (RFC 6455 §4.1;
// methods are case-sensitive, RFC 9110 §9.1), so any other first bytes, a
// control byte in the request line, or a complete request line that is not
// "GET target HTTP/1.x" (x >= 1) end the peek at once.
func readRequestHead(r io.Reader, buf []byte) (n int, websocket bool, err error) {
	lineEnd := -1 // index of the LF ending the request line, once seen
	empty := 0
	for n < len(buf) {
		var m int
		m, err = r.Read(buf[n:])
		if m < 0 || m > len(buf)-n {
			return n, false, errInvalidRead
		}
		if m == 0 && err == nil {
			if empty++; empty >= maxEmptyReads {
				return n, false, io.ErrNoProgress
			}
			continue
		}
		empty = 0
		prev := n
		n += m
		b := buf[:n]
		if lineEnd < 0 {
			var ok bool
			if lineEnd, ok = scanRequestLine(b, prev); !ok {
				return n, false, err
			}
			if lineEnd >= 0 && !validRequestLine(trimCR(b[:lineEnd])) {
				return n, false, err
			}
		}
		if lineEnd >= 0 {
			// An empty line can only start right after an LF at or after
			// lineEnd; the last two bytes of the previous read may hold the
			// start of "\n\n" or "\n\r\n".
			if end := headEnd(b, max(lineEnd, prev-2)); end > 0 {
				return n, isWebSocketUpgrade(b[:end]), err
			}
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, err
}

// scanRequestLine checks b as the start of a handshake request line, looking
// at new bytes from index from on (and the byte before, in case it was a CR).
// It returns the index of the LF that ends the request line, or -1 if the line
// is not complete yet; ok is false as soon as b cannot start a handshake: its
// first bytes differ from "GET ", or the line holds a control byte other than a
// CR right before the LF.
func scanRequestLine(b []byte, from int) (lineEnd int, ok bool) {
	const prefix = "GET "
	k := min(len(b), len(prefix))
	if string(b[:k]) != prefix[:k] {
		return -1, false
	}
	for i := max(from-1, 0); i < len(b); i++ {
		switch c := b[i]; {
		case c == '\n':
			return i, true
		case c == '\r':
			if i+1 < len(b) && b[i+1] != '\n' {
				return -1, false
			}
		case c < ' ' || c == 0x7f:
			return -1, false
		}
	}
	return -1, true
}

// headEnd returns the length of the head in b, through the empty line that
// ends it, or 0 if no LF at or after index from is followed by an empty line.
// A line ends with LF, optionally preceded by CR (RFC 9112 §2.2).
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
	return 0
}

// isWebSocketUpgrade reports whether head (a complete request head, including
// the terminating empty line) is an HTTP/1.1 (or later 1.x) GET request whose
// Upgrade header lists the token "websocket" and whose Connection header lists
// the token "upgrade".
//
// Bytes after the empty line are ignored. A head without an empty line, with
// an obs-fold line, or with a malformed field line is not a match.
func isWebSocketUpgrade(head []byte) bool {
	line, rest, ok := nextLine(head)
	if !ok || !validRequestLine(line) {
		return false
	}
	var upgrade, connection bool
	for {
		if line, rest, ok = nextLine(rest); !ok {
			return false // truncated: no empty line
		}
		if len(line) == 0 {
			return upgrade && connection
		}
		name, value, ok := parseField(line)
		if !ok {
			return false
		}
		// Repeated fields combine into one list (RFC 9110 §5.3), so a token
		// in any of them counts.
		switch {
		case equalFoldASCII(name, "upgrade"):
			upgrade = upgrade || hasToken(value, "websocket")
		case equalFoldASCII(name, "connection"):
			connection = connection || hasToken(value, "upgrade")
		}
	}
}

// validRequestLine reports whether line (without its line ending) is
// "GET SP request-target SP HTTP/1.x" with a single minor digit x >= 1.
func validRequestLine(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("GET "))
	if !ok {
		return false
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return false
	}
	for _, c := range rest[:sp] {
		if c < ' ' || c == 0x7f {
			return false
		}
	}
	v := rest[sp+1:]
	return len(v) == len("HTTP/1.x") && string(v[:7]) == "HTTP/1." && v[7] >= '1' && v[7] <= '9'
}

// nextLine splits off the first line of b, without its LF or CRLF ending.
// ok is false if b holds no LF.
func nextLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, b, false
	}
	return trimCR(b[:i]), b[i+1:], true
}

// parseField splits a field line into its name and its value without OWS
// (RFC 9112 §5). ok is false for a missing colon, an empty name, a name that
// is not a token (which covers obs-fold lines and whitespace before the colon),
// or a control byte other than HTAB in the value (such as a bare CR).
func parseField(line []byte) (name, value []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil, nil, false
	}
	name, value = line[:i], line[i+1:]
	for _, c := range name {
		if !isTchar(c) {
			return nil, nil, false
		}
	}
	for _, c := range value {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return nil, nil, false
		}
	}
	return name, bytes.Trim(value, " \t"), true // strip OWS
}

// hasToken reports whether the comma-separated list (RFC 9110 §5.6.1) holds
// token, compared case-insensitively. Empty list elements are skipped.
func hasToken(list []byte, token string) bool {
	for len(list) > 0 {
		elem := list
		if i := bytes.IndexByte(list, ','); i >= 0 {
			elem, list = list[:i], list[i+1:]
		} else {
			list = nil
		}
		if equalFoldASCII(bytes.Trim(elem, " \t"), token) {
			return true
		}
	}
	return false
}

// equalFoldASCII reports whether b equals lower, which must consist of
// lower-case ASCII letters, ignoring ASCII case. Unlike bytes.EqualFold it
// does not match e.g. U+212A KELVIN SIGN with "k".
func equalFoldASCII(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		if b[i]|0x20 != lower[i] { // only 'X' and 'x' map to 'x'
			return false
		}
	}
	return true
}

// isTchar reports whether c may appear in a token (RFC 9110 §5.6.2).
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// trimCR removes one trailing CR, the optional half of a CRLF line ending.
func trimCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}
