package main

import (
	"bytes"
	"strconv"
	"strings"
)

// keyLines maps key paths to 1-based line numbers. Paths use dots between keys
// and [i] for elements of arrays of tables, as in "listener[0].tls.certificates",
// "listener[1].route[0].sni", "upstream[2].servers", "log.format". Elements of
// inline arrays are indexed too: "upstream[0].servers[1]" is the line where
// that element starts, "listener[0].tls.certificates[1].cert" the line of a
// key of an inline table in an array.
type keyLines struct {
	lines map[string]int // indexed path → first line defining it
	plain map[string]int // unindexed path, keys joined by "\x00" → first line
}

// maxNesting bounds nested arrays and inline tables, and the parts of a
// dotted key, so that hostile input can neither exhaust the stack nor take
// quadratic time: checkNesting refuses a file that goes deeper before it
// is decoded, and the scanner here stops there too.
const maxNesting = 64

// tomlScanner is the cursor of scanKeyLines. It understands just enough TOML
// to find keys, and resynchronises at the next line when it meets something
// it does not understand.
type tomlScanner struct {
	data      []byte
	pos, line int
	k         *keyLines
	table     string         // indexed path of the current table
	tableKeys []string       // unindexed keys of the current table
	arrays    map[string]int // indexed path of an array of tables, without index → element count
}

// scanKeyLines scans a TOML document and records the line of every key,
// table header and array element it defines. It is best effort and never
// fails: syntax errors are left for the real parser to report.
func scanKeyLines(data []byte) *keyLines {
	k := &keyLines{lines: map[string]int{}, plain: map[string]int{}}
	s := &tomlScanner{data: data, line: 1, k: k, arrays: map[string]int{}}
	for _, bom := range []string{"\uFEFF", "\xff\xfe", "\xfe\xff"} { // as toml.Decode skips
		if bytes.HasPrefix(data, []byte(bom)) {
			s.pos = len(bom)
		}
	}
	for s.skipSpace(true); s.pos < len(s.data); s.skipSpace(true) {
		if s.data[s.pos] == '[' {
			s.header()
		} else {
			s.keyValue(s.table, s.tableKeys, 0)
		}
		// Skip the rest of the line, which is empty unless scanning failed.
		for s.skipSpace(false); s.pos < len(s.data) && s.data[s.pos] != '\n'; s.pos++ {
		}
	}
	return k
}

// line returns the line where path (or, failing that, its nearest ancestor
// that was seen: e.g. "listener[0].tls.certificates[1].cert" falls back to
// "listener[0].tls.certificates[1]", then "listener[0].tls.certificates") is
// defined, or 0.
func (k *keyLines) line(path string) int {
	for k != nil && path != "" {
		if n := k.lines[path]; n > 0 {
			return n
		}
		path = path[:max(strings.LastIndexAny(path, ".["), 0)]
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

// record notes that path, and its unindexed form plain, are defined at line
// unless they were seen before.
func (s *tomlScanner) record(path string, plain []string, line int) {
	if s.k.lines[path] == 0 {
		s.k.lines[path] = line
	}
	if p := strings.Join(plain, "\x00"); s.k.plain[p] == 0 {
		s.k.plain[p] = line
	}
}

// header scans a "[a.b]" or "[[a.b]]" table header and makes it the current
// table. Arrays of tables are counted per parent element, and other headers
// extend the last element of the arrays they name.
func (s *tomlScanner) header() {
	line := s.line
	s.pos++
	array := s.eat('[')
	keys, ok := s.key()
	if !ok || !s.eat(']') || array && !s.eat(']') {
		return
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
	s.table, s.tableKeys = path, keys
	s.record(path, keys, line)
}

// keyValue scans "key = value" in the table at path and records the key and,
// for a dotted key, each of its prefixes.
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

// key scans a possibly dotted key of bare and quoted parts, and the blanks
// around them.
func (s *tomlScanner) key() ([]string, bool) {
	var keys []string
	for {
		s.skipSpace(false)
		start := s.pos
		for s.pos < len(s.data) && isBareKey(s.data[s.pos]) {
			s.pos++
		}
		k, ok := string(s.data[start:s.pos]), s.pos > start
		if !ok && s.pos < len(s.data) && (s.data[s.pos] == '"' || s.data[s.pos] == '\'') {
			k, ok = s.str()
		}
		if keys = append(keys, k); !ok || len(keys) > maxNesting {
			return nil, false
		}
		if s.skipSpace(false); !s.eat('.') {
			return keys, true
		}
	}
}

// value scans the value of the key at path, recording the elements of arrays
// and the keys of inline tables.
func (s *tomlScanner) value(path string, plain []string, depth int) bool {
	if depth > maxNesting || s.pos >= len(s.data) {
		return false
	}
	switch open := s.data[s.pos]; open {
	case '"', '\'':
		_, ok := s.str()
		return ok
	case '[', '{':
		end := open + 2 // ']' or '}'
		s.pos++
		for i := 0; ; i++ {
			if s.skipSpace(true); s.eat(end) {
				return true
			}
			var ok bool
			if open == '{' {
				ok = s.keyValue(path, plain, depth+1)
			} else {
				elem := path + "[" + strconv.Itoa(i) + "]"
				s.record(elem, plain, s.line)
				ok = s.value(elem, plain, depth+1)
			}
			if !ok {
				return false
			}
			if s.skipSpace(true); !s.eat(',') {
				return s.eat(end)
			}
		}
	}
	start := s.pos // number, boolean or date: up to the next delimiter
	for s.pos < len(s.data) && strings.IndexByte(",]}#\n", s.data[s.pos]) < 0 {
		s.pos++
	}
	return s.pos > start
}

// str scans a basic or literal string, on one line or (between three quotes)
// on several, and returns its contents with backslash escapes reduced to the
// escaped byte.
func (s *tomlScanner) str() (string, bool) {
	q := s.data[s.pos : s.pos+1]
	if bytes.HasPrefix(s.data[s.pos:], bytes.Repeat(q, 3)) {
		q = bytes.Repeat(q, 3)
	}
	var b strings.Builder
	for s.pos += len(q); s.pos < len(s.data); s.pos++ {
		c := s.data[s.pos]
		switch {
		case bytes.HasPrefix(s.data[s.pos:], q):
			s.pos += len(q)
			for i := 0; len(q) == 3 && i < 2 && s.eat(q[0]); i++ { // quotes just before the closing ones
			}
			return b.String(), true
		case c == '\n' && len(q) == 1:
			return "", false
		case c == '\\' && q[0] == '"' && s.pos+1 < len(s.data) && (len(q) == 3 || s.data[s.pos+1] != '\n'):
			s.pos++
			c = s.data[s.pos]
		}
		if c == '\n' {
			s.line++
		}
		b.WriteByte(c)
	}
	return "", false
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
