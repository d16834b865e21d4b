package main

import (
	"fmt"
	"io"
	"os"
)

// maxConfigSize bounds a configuration file. A real one is a few KB, since
// certificates and keys are separate files; 256 KiB leaves room for a
// generated file with hundreds of listeners, yet a wrong path (a log, a
// disk image, /dev/zero) is refused before it is read whole, and the worst
// file under it (key paths at the limit, which the decoder records every
// prefix of) decodes in bounded memory.
const maxConfigSize = 256 << 10

// readConfigFile reads a configuration file of at most maxConfigSize bytes.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	// A regular file says its size: refuse it without reading. Others
	// (a pipe, a device) are read up to one byte past the limit.
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > maxConfigSize {
		return nil, tooLarge(path, fmt.Sprintf("%d bytes", fi.Size()))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(data) > maxConfigSize {
		return nil, tooLarge(path, fmt.Sprintf("more than %d bytes", maxConfigSize))
	}
	return data, nil
}

func tooLarge(path, size string) error {
	return &configError{file: path, msg: size + ": larger than the 256 KiB a configuration may be"}
}

// checkNesting refuses a document whose arrays and inline tables nest
// deeper than maxNesting, or with a key path (its table's keys, those of
// the inline tables around it and its own dotted parts) longer than that.
// The TOML decoder recurses once per level, so 4 MB of "[" overflow its
// stack, and it records every prefix of every key path, so a path of
// 20,000 parts takes gigabytes; nothing real comes near 64 of either.
//
// It is a single pass that knows comments, the four kinds of string and
// whether a key or a value comes next, so brackets and dots inside strings
// and comments, and dots in numbers and dates, do not count. Other syntax
// errors are left to the decoder, which reports them better.
func checkNesting(path string, data []byte) error {
	type frame struct {
		open byte // '[' or '{'
		base int  // base outside it
	}
	var (
		line   = 1
		stack  []frame // open arrays and inline tables
		key    = true  // a key (or table header) comes next, not a value
		header bool    // inside a [table] or [[array]] header
		base   int     // key path length of the table the next key is in
		parts  = 1     // parts of the key being read; 0 for an array element
	)
	fail := func(msg string) error {
		return &configError{file: path, line: line, msg: msg}
	}
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '\n':
			line++
			if len(stack) == 0 { // a top-level key/value pair or header ends
				key, header, parts = true, false, 1
			}
		case '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case '"', '\'':
			end, newlines := skipString(data, i)
			i, line = end-1, line+newlines
		case '.':
			if key {
				if parts++; base+parts > maxNesting {
					return fail(fmt.Sprintf("key path longer than %d parts", maxNesting))
				}
			}
		case '=':
			if key && !header {
				key = false
			}
		case '[', '{':
			if c == '[' && key && len(stack) == 0 {
				header, base = true, 0 // "[" or "[[" opening a table header
				continue
			}
			if stack = append(stack, frame{c, base}); len(stack) > maxNesting {
				return fail(fmt.Sprintf("nesting deeper than %d arrays/inline tables", maxNesting))
			}
			base += parts
			if c == '{' {
				key, parts = true, 1
			} else {
				key, parts = false, 0
			}
		case ']', '}':
			switch {
			case len(stack) > 0:
				base, key = stack[len(stack)-1].base, false // a value ended: "," or a close follows
				stack = stack[:len(stack)-1]
			case header:
				base = parts // the keys that follow are in this table
			}
		case ',':
			if len(stack) > 0 {
				if stack[len(stack)-1].open == '{' {
					key, parts = true, 1
				} else {
					parts = 0
				}
			}
		}
	}
	return nil
}

// skipString returns the index just past the string that starts at data[i]
// (a quote), and the newlines inside it: basic "..." with backslash escapes,
// literal '...' without, and the multi-line form of each between three
// quotes, which may end with up to two more ("""a""""" holds a""). An
// unterminated one-line string ends before its newline.
func skipString(data []byte, i int) (end, newlines int) {
	q := data[i]
	multi := i+2 < len(data) && data[i+1] == q && data[i+2] == q
	if multi {
		i += 3
	} else {
		i++
	}
	for ; i < len(data); i++ {
		switch data[i] {
		case '\n':
			if !multi {
				return i, newlines
			}
			newlines++
		case '\\':
			if q == '"' && i+1 < len(data) && (multi || data[i+1] != '\n') {
				if i++; data[i] == '\n' {
					newlines++
				}
			}
		case q:
			if !multi {
				return i + 1, newlines
			}
			if i+2 < len(data) && data[i+1] == q && data[i+2] == q {
				i += 3
				for k := 0; k < 2 && i < len(data) && data[i] == q; k++ {
					i++
				}
				return i, newlines
			}
		}
	}
	return i, newlines
}
