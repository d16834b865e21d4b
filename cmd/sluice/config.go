package main

import (
	"errors"
	"fmt"
	"os"
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
func loadConfig(path string) (*l4.Config, *keyLines, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	var cfg l4.Config
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, nil, &configError{file: path, line: pe.Position.Line, key: pe.LastKey, msg: pe.Message}
		}
		return nil, nil, &configError{file: path, msg: err.Error()}
	}
	lines := scanKeyLines(data)
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, &configError{file: path, line: lines.lineOf(k), key: k.String(),
			msg: "unknown key (check its spelling and the table it is in)"})
	}
	if len(errs) > 0 {
		// Unknown keys often explain the validation errors that follow
		// (a misspelt "adress" leaves "address" missing); show them alone.
		return nil, nil, errors.Join(errs...)
	}
	return &cfg, lines, nil
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
