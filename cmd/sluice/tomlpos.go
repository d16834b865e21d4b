package main

import (
	"bytes"
	"strconv"
	"strings"
)

// keyLines maps key paths to 1-based line numbers. Paths use dots between keys
// and [i] for elements of arrays of tables, as in "listener[0].tls.certificates",
// "listener[1].route[0].sni", "upstream[2].servers", "log.format". Elements of
// inline arrays are indexed too ("upstream[0].servers[1]", or
// "listener[0].tls.certificates[1].cert" for a key of an inline table).
type keyLines struct {
	lines map[string]int // indexed path → first line defining it
	plain map[string]int // unindexed path, keys joined by "\x00" → first line
}

// maxNesting bounds nested arrays and inline tables so that hostile input
// cannot exhaust the stack.
const maxNesting = 64

// tomlScanner is the cursor of scanKeyLines. It is a best-effort scanner: it
// understands just enough TOML to find keys, and resynchronises at the next
// line when it meets something it does not understand.
type tomlScanner struct {
	data   []byte
	pos    int
	line   int
	k      *keyLines
	arrays map[string]int // indexed path of an array of tables, without index → element count
}

// scanKeyLines scans a TOML document and records the line of every key,
// table header and array element it defines. It never fails; syntax errors
// are left for the real parser to report.
func scanKeyLines(data []byte) *keyLines {
	k := &keyLines{lines: map[string]int{}, plain: map[string]int{}}
	s := &tomlScanner{data: data, line: 1, k: k, arrays: map[string]int{}}
	if bytes.HasPrefix(data, []byte("\uFEFF")) {
		s.pos = 3
	}
	var table string // indexed path of the current table
	var plainTable []string
	for s.skipSpace(true); s.pos < len(s.data); s.skipSpace(true) {
		ok := false
		if line := s.line; s.data[s.pos] == '[' {
			var path string
			var keys []string
			if path, keys, ok = s.header(); ok {
				table, plainTable = path, keys
				s.record(path, keys, line)
			}
		} else {
			ok = s.keyValue(table, plainTable, 0)
		}
		if s.skipSpace(false); !ok || (s.pos < len(s.data) && s.data[s.pos] != '\n') {
			for s.pos < len(s.data) && s.data[s.pos] != '\n' {
				s.pos++
			}
		}
	}
	return k
}

// line returns the line where path (or, failing that, its nearest ancestor
// that was seen: e.g. "listener[0].tls.certificates[1].cert" falls back to
// "listener[0].tls.certificates" when that key holds something other than
// inline tables) is defined, or 0.
func (k *keyLines) line(path string) int {
	for k != nil && path != "" {
		if n, ok := k.lines[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// lineOf returns the first line of a path given without array indices, as
// toml.MetaData.Undecoded() keys are (e.g. []string{"listener", "tls", "bogus"}),
// or 0.
func (k *keyLines) lineOf(key []string) int {
	if k == nil {
		return 0
	}
	return k.plain[strings.Join(key, "\x00")]
}

// record notes that path (and plain, unless nil) is defined at line, unless
// an earlier definition was already seen.
func (s *tomlScanner) record(path string, plain []string, line int) {
	if _, ok := s.k.lines[path]; !ok {
		s.k.lines[path] = line
	}
	if p := strings.Join(plain, "\x00"); plain != nil {
		if _, ok := s.k.plain[p]; !ok {
			s.k.plain[p] = line
		}
	}
}

// header scans a "[a.b]" or "[[a.b]]" table header and returns its indexed
// path and its keys. Arrays of tables are counted per parent element.
func (s *tomlScanner) header() (string, []string, bool) {
	s.pos++
	array := s.eat('[')
	keys, ok := s.key()
	if !ok || !s.eat(']') || (array && !s.eat(']')) {
		return "", nil, false
	}
	path := ""
	for i, k := range keys {
		if path != "" {
			path += "."
		}
		path += k
		n := s.arrays[path]
		if array && i == len(keys)-1 {
			n++
			s.arrays[path] = n
		}
		if n > 0 {
			path += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return path, keys, true
}

// keyValue scans "key = value" inside the table at path and records the key
// and, for a dotted key, each of its prefixes.
func (s *tomlScanner) keyValue(path string, plain []string, depth int) bool {
	line := s.line
	keys, ok := s.key()
	if !ok || !s.eat('=') {
		return false
	}
	for _, k := range keys {
		if path != "" {
			path += "."
		}
		path += k
		plain = append(plain[:len(plain):len(plain)], k)
		s.record(path, plain, line)
	}
	s.skipSpace(false)
	return s.value(path, plain, depth)
}

// key scans a possibly dotted key of bare and quoted parts, with the
// whitespace around them.
func (s *tomlScanner) key() ([]string, bool) {
	var keys []string
	for {
		s.skipSpace(false)
		start := s.pos
		var k string
		if s.pos < len(s.data) && (s.data[s.pos] == '"' || s.data[s.pos] == '\'') {
			var ok bool
			if k, ok = s.quoted(); !ok {
				return nil, false
			}
		} else {
			for s.pos < len(s.data) && isBareKey(s.data[s.pos]) {
				s.pos++
			}
			if k = string(s.data[start:s.pos]); k == "" {
				return nil, false
			}
		}
		keys = append(keys, k)
		if s.skipSpace(false); !s.eat('.') {
			return keys, true
		}
	}
}

// value scans a value of the key at path, recording the elements of arrays
// and the keys of inline tables.
func (s *tomlScanner) value(path string, plain []string, depth int) bool {
	if depth > maxNesting || s.pos >= len(s.data) {
		return false
	}
	switch c := s.data[s.pos]; {
	case c == '"' || c == '\'':
		if q := []byte{c, c, c}; bytes.HasPrefix(s.data[s.pos:], q) {
			return s.multiline(q)
		}
		_, ok := s.quoted()
		return ok
	case c == '[':
		s.pos++
		for i := 0; ; i++ {
			if s.skipSpace(true); s.eat(']') {
				return true
			}
			elem := path + "[" + strconv.Itoa(i) + "]"
			s.record(elem, nil, s.line)
			if !s.value(elem, plain, depth+1) {
				return false
			}
			if s.skipSpace(true); !s.eat(',') {
				return s.eat(']')
			}
		}
	case c == '{':
		s.pos++
		for {
			if s.skipSpace(true); s.eat('}') {
				return true
			}
			if !s.keyValue(path, plain, depth+1) {
				return false
			}
			if s.skipSpace(true); !s.eat(',') {
				return s.eat('}')
			}
		}
	}
	start := s.pos // number, boolean or date: up to the next delimiter
	for s.pos < len(s.data) && strings.IndexByte(",]}#\n", s.data[s.pos]) < 0 {
		s.pos++
	}
	return s.pos > start
}

// quoted scans a one-line basic or literal string and returns its contents,
// with backslash escapes reduced to the escaped byte in basic strings.
func (s *tomlScanner) quoted() (string, bool) {
	q := s.data[s.pos]
	var b strings.Builder
	for s.pos++; s.pos < len(s.data) && s.data[s.pos] != '\n'; s.pos++ {
		switch c := s.data[s.pos]; {
		case c == q:
			s.pos++
			return b.String(), true
		case c == '\\' && q == '"' && s.pos+1 < len(s.data) && s.data[s.pos+1] != '\n':
			s.pos++
			b.WriteByte(s.data[s.pos])
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}

// multiline scans a multi-line basic or literal string delimited by the
// three quotes q, counting the lines it spans.
func (s *tomlScanner) multiline(q []byte) bool {
	for s.pos += 3; s.pos < len(s.data); s.pos++ {
		switch c := s.data[s.pos]; {
		case bytes.HasPrefix(s.data[s.pos:], q):
			s.pos += 3
			for i := 0; i < 2 && s.eat(q[0]); i++ { // up to two quotes may precede the closing ones
			}
			return true
		case c == '\\' && q[0] == '"' && s.pos+1 < len(s.data):
			if s.pos++; s.data[s.pos] == '\n' {
				s.line++
			}
		case c == '\n':
			s.line++
		}
	}
	return false
}

// skipSpace skips blanks and comments and, if newlines is set, line ends.
func (s *tomlScanner) skipSpace(newlines bool) {
	for ; s.pos < len(s.data); s.pos++ {
		switch s.data[s.pos] {
		case ' ', '\t', '\r':
		case '\n':
			if !newlines {
				return
			}
			s.line++
		case '#':
			for s.pos+1 < len(s.data) && s.data[s.pos+1] != '\n' {
				s.pos++
			}
		default:
			return
		}
	}
}

// eat consumes c if it is the next byte.
func (s *tomlScanner) eat(c byte) bool {
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// isBareKey reports whether c may appear in a bare key.
func isBareKey(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
