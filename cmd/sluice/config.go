package main

import (
	"errors"
	"fmt"
	"iter"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"sluice/l4"
)

// configError is a configuration problem, located in its file as precisely
// as known: "file:line: key: message".
type configError struct {
	file string
	line int
	key  string
	msg  string
}

func (e *configError) Error() string {
	var b strings.Builder
	b.WriteString(e.file)
	if e.line > 0 {
		fmt.Fprintf(&b, ":%d", e.line)
	}
	b.WriteString(": ")
	if e.key != "" {
		b.WriteString(e.key)
		b.WriteString(": ")
	}
	b.WriteString(e.msg)
	return b.String()
}

// loadConfig reads and strictly decodes a configuration file: syntax
// errors, wrong types and unknown keys are returned, one *configError each,
// joined. The key lines it returns locate the errors l4.New finds later.
// A file too large or too deeply nested to decode safely is refused first.
func loadConfig(path string) (*l4.Config, *keyLines, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return nil, nil, err
	}
	if err := checkNesting(path, data); err != nil {
		return nil, nil, err
	}
	var cfg l4.Config
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := pe.Message
			if strings.HasPrefix(msg, "expected value but found") || strings.HasPrefix(msg, "Invalid float value") {
				// Most often an address or a name without its quotes.
				msg += ` (strings must be quoted, as in "127.0.0.1:8443")`
			}
			return nil, nil, &configError{file: path, line: pe.Position.Line, key: pe.LastKey, msg: msg}
		}
		return nil, nil, decodeError(path, err)
	}
	lines := scanKeyLines(data)
	var errs []error
	undecoded := md.Undecoded()
	unknown := make(map[string]bool, len(undecoded))
	for _, k := range undecoded {
		unknown[k.String()] = true
	}
	// A key that appears in several elements of an array of tables, say a
	// misspelt key in two [[listener.route]] tables, is listed once per
	// element, in document order: give each its own line.
	seen := make(map[string]int)     // occurrences of each unknown key so far
	occurs := make(map[string][]int) // lines of each unknown key, in order
	for _, k := range undecoded {
		// Report an unknown table alone, not every key in it too.
		if underUnknown(k, unknown) {
			continue
		}
		ks := k.String()
		if _, ok := occurs[ks]; !ok {
			occurs[ks] = lines.occurrences(k)
		}
		line := lines.lineOf(k)
		if n := seen[ks]; n < len(occurs[ks]) {
			line = occurs[ks][n]
		}
		seen[ks]++
		errs = append(errs, &configError{file: path, line: line, key: ks, msg: unknownKeyMessage(k)})
	}
	if len(errs) > 0 {
		// Unknown keys often explain the validation errors that follow
		// (a misspelt "adress" leaves "address" missing); show them alone.
		return nil, nil, errors.Join(errs...)
	}
	return &cfg, lines, nil
}

// unknownKeyMessage explains an unknown key: the known key it is most
// likely a misspelling of, and the keys its table accepts.
func unknownKeyMessage(k toml.Key) string {
	known := knownKeys(reflect.TypeFor[l4.Config](), k[:len(k)-1])
	if len(known) == 0 {
		return "unknown key (check its spelling and the table it is in)"
	}
	name := strings.ToLower(k[len(k)-1])
	best, bestDist := "", 3
	for _, c := range known {
		if len(name) > len(c)+2 {
			continue // too long to be a misspelling
		}
		if d := editDistance(name, c); d < bestDist && d < len(c)/2+1 {
			best, bestDist = c, d
		}
	}
	list := "expected one of " + strings.Join(known, ", ")
	if best != "" {
		return fmt.Sprintf("unknown key: did you mean %q? (%s)", best, list)
	}
	return "unknown key (check its spelling and the table it is in): " + list
}

// knownKeys lists the TOML keys of the table at path (keys without array
// indices) in the configuration type t, in declaration order, or nil when
// path does not lead to a table.
func knownKeys(t reflect.Type, path []string) []string {
	for {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		if len(path) == 0 {
			break
		}
		f, ok := fieldByKey(t, path[0])
		if !ok {
			return nil
		}
		t, path = f.Type, path[1:]
	}
	var keys []string
	for f := range tomlFields(t) {
		keys = append(keys, tomlKey(f))
	}
	return keys
}

// fieldByKey finds the field of struct type t tagged with TOML key k.
func fieldByKey(t reflect.Type, k string) (reflect.StructField, bool) {
	for f := range tomlFields(t) {
		if tomlKey(f) == k {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// tomlFields yields the fields of struct type t that carry a TOML key, in
// declaration order, those of an untagged embedded struct in its place (its
// keys sit in the same table, as the decoder sees them).
func tomlFields(t reflect.Type) iter.Seq[reflect.StructField] {
	return func(yield func(reflect.StructField) bool) {
		for f := range t.Fields() {
			if f.Anonymous && tomlKey(f) == "" && f.Type.Kind() == reflect.Struct {
				for g := range tomlFields(f.Type) {
					if !yield(g) {
						return
					}
				}
				continue
			}
			if k := tomlKey(f); k != "" && k != "-" && f.IsExported() && !yield(f) {
				return
			}
		}
	}
}

// tomlKey is the key in f's toml tag.
func tomlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return k
}

// editDistance is the number of single-byte insertions, deletions,
// substitutions and swaps of adjacent bytes that turn a into b (optimal
// string alignment distance).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// underUnknown reports whether a proper prefix of k is itself in unknown.
func underUnknown(k toml.Key, unknown map[string]bool) bool {
	for i := 1; i < len(k); i++ {
		if unknown[k[:i].String()] {
			return true
		}
	}
	return false
}

// occurrences returns the lines of every occurrence of key, given without
// array indices as toml.MetaData.Undecoded() keys are, in order.
func (k *keyLines) occurrences(key []string) []int {
	if k == nil {
		return nil
	}
	var found []int
	k.expand("", key, &found)
	slices.Sort(found)
	return found
}

// expand appends the lines of every indexed path that key, given without
// indices, has under prefix: "listener", "route", "x" is looked for as
// "listener[0].route[0].x", "listener[0].route[1].x" and so on.
func (k *keyLines) expand(prefix string, key []string, found *[]int) {
	if len(key) == 0 {
		return
	}
	next := key[0]
	if prefix != "" {
		next = prefix + "." + next
	}
	_, plain := k.lines[next]
	_, indexed := k.lines[next+"[0]"]
	last := len(key) == 1
	switch {
	case last && plain:
		*found = append(*found, k.lines[next])
	case indexed:
		for i := 0; ; i++ {
			elem := next + "[" + strconv.Itoa(i) + "]"
			line, ok := k.lines[elem]
			if !ok {
				break
			}
			if last {
				*found = append(*found, line)
			} else {
				k.expand(elem, key[1:], found)
			}
		}
	case plain:
		k.expand(next, key[1:], found)
	}
}

// decodeErrorRE matches the errors toml.Decode returns, without a position
// type, when a value does not fit its Go type: `toml: line 3 (last key
// "listener.max_connections"): incompatible types: ...`.
var decodeErrorRE = regexp.MustCompile(`(?s)^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): (.*)$`)

// decodeError turns a toml.Decode error that is not a toml.ParseError into
// a *configError, with the line and key it names.
func decodeError(path string, err error) error {
	m := decodeErrorRE.FindStringSubmatch(err.Error())
	if m == nil {
		return &configError{file: path, msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	key, uerr := strconv.Unquote(m[2])
	if uerr != nil {
		key = m[2]
	}
	msg := m[3]
	if rest, ok := strings.CutPrefix(msg, "incompatible types: TOML value has type "); ok {
		if have, want, ok := strings.Cut(rest, "; destination has type "); ok {
			msg = fmt.Sprintf("wrong type: expected %s, found %s", tomlType(want), tomlType(have))
		}
	}
	return &configError{file: path, line: line, key: key, msg: msg}
}

// tomlType names in TOML's words a type as toml.Decode's errors print it:
// the Go type of the value found, or the kind of value expected.
func tomlType(t string) string {
	switch {
	case t == "string", t == "primitive (string-like)":
		return "a string"
	case t == "integer", t == "int64":
		return "an integer"
	case t == "float", t == "float64":
		return "a float"
	case t == "boolean", t == "bool":
		return "a boolean"
	case t == "slice", strings.HasPrefix(t, "[]"):
		return "an array"
	case t == "map", strings.HasPrefix(t, "map["):
		return "a table"
	case strings.HasPrefix(t, "time."), strings.HasPrefix(t, "toml.Local"):
		return "a date or time"
	}
	return t
}

// locate turns the *l4.FieldErrors in err into *configErrors with the file
// and line of their key.
func locate(path string, lines *keyLines, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range flatten(err) {
		var fe *l4.FieldError
		if errors.As(e, &fe) {
			out = append(out, &configError{file: path, line: lines.line(fe.Path), key: fe.Path, msg: fe.Err.Error()})
		} else {
			out = append(out, &configError{file: path, msg: e.Error()})
		}
	}
	return errors.Join(out...)
}

// flatten lists the errors joined in err, recursively.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
