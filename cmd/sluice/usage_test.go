package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"regexp"
	"strings"
	"testing"
)

// flagLine finds the line of usage that documents flag -name: it starts
// with "  -name" followed by a space or the end of the line.
func flagLine(usage, section, name string) (string, bool) {
	_, rest, ok := strings.Cut(usage, section)
	if !ok {
		return "", false
	}
	for line := range strings.Lines(rest) {
		if line == "\n" {
			break // the end of the section
		}
		if strings.HasPrefix(line, "  -"+name+" ") || strings.TrimRight(line, "\n") == "  -"+name {
			return line, true
		}
	}
	return "", false
}

// demoFlags returns demo-backend's flags and their usage texts, as its
// own flag set prints them.
func demoFlags(t *testing.T) map[string]string {
	t.Helper()
	var out bytes.Buffer
	if _, err := newDemoBackend([]string{"-h"}, &out, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("demo-backend -h = %v", err)
	}
	// flag.PrintDefaults: "  -name arg" then "    \tusage (default "x")",
	// the usage already unquoted; the default is compared apart.
	re := regexp.MustCompile(`(?m)^  -(\S+).*\n[ ]+\t(.*?)(?: \(default .*\))?$`)
	flags := make(map[string]string)
	for _, m := range re.FindAllStringSubmatch(out.String(), -1) {
		flags[m[1]] = m[2]
	}
	if len(flags) == 0 {
		t.Fatalf("no flags in demo-backend -h:\n%s", out.String())
	}
	return flags
}

// TestUsageListsEverything checks that "sluice -h" lists every command and,
// on a line each with its usage text, every flag of every command, read
// from their flag sets, so a flag added later cannot be left out.
func TestUsageListsEverything(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-h"}, &stdout, &stderr, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h = %v, want flag.ErrHelp", err)
	}
	usage := stderr.String()
	for _, cmd := range []string{"sluice [-config FILE]", "sluice -check [-v]", "sluice -version", "sluice demo-backend", "sluice cert"} {
		if !strings.Contains(usage, "\n  "+cmd) {
			t.Errorf("usage does not list %q:\n%s", cmd, usage)
		}
	}

	sections := []struct {
		name  string
		flags map[string]string
	}{
		{"Flags:\n", nil},
		{"cert flags:\n", nil},
		{"demo-backend flags:\n", demoFlags(t)},
	}
	for i, fs := range []*flag.FlagSet{newFlagSet(&options{}, io.Discard), newCertFlagSet(&certOptions{}, io.Discard)} {
		sections[i].flags = make(map[string]string)
		fs.VisitAll(func(f *flag.Flag) {
			_, u := flag.UnquoteUsage(f)
			sections[i].flags[f.Name] = u
		})
	}
	for _, s := range sections {
		for name, text := range s.flags {
			line, ok := flagLine(usage, s.name, name)
			if !ok {
				t.Errorf("%q section does not list -%s:\n%s", strings.TrimSpace(s.name), name, usage)
				continue
			}
			if !strings.Contains(line, text) {
				t.Errorf("line of -%s = %q, want its usage %q", name, line, text)
			}
		}
	}
	// The demo-backend section is written by hand: it must not list a
	// flag the command does not have.
	if got, want := len(demoFlagLines), len(sections[2].flags); got != want {
		t.Errorf("usage lists %d demo-backend flags, the command has %d", got, want)
	}
}

// TestUsageFlagLine checks the one-line format: the argument name from
// the usage's back quotes, in capitals, and a non-zero default.
func TestUsageFlagLine(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("config", "/etc/x.toml", "configuration `file`")
	fs.Bool("check", false, "check and exit")
	fs.Int("days", 365, "valid for `N` days")
	fs.String("names", "", "the `names`")
	var out bytes.Buffer
	writeFlags(&out, fs)
	want := "" +
		"  -check        check and exit\n" +
		"  -config FILE  configuration file (default /etc/x.toml)\n" +
		"  -days N       valid for N days (default 365)\n" +
		"  -names NAMES  the names\n"
	if out.String() != want {
		t.Errorf("writeFlags:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestCertHelp checks "sluice cert -h": the command's own usage.
func TestCertHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"cert", "-h"}, &stdout, &stderr, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run cert -h = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"Usage: sluice cert -names NAMES -cert FILE -key FILE", "  -days N ", "  -force "} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("cert -h output lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestRunVerboseNeedsCheck checks that -v alone is refused rather than
// ignored (it would otherwise start serving).
func TestRunVerboseNeedsCheck(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run([]string{"-v", "-config", "/nonexistent.toml"}, &stdout, &stderr, nil)
	if err == nil || !strings.Contains(err.Error(), "-v works with -check only") {
		t.Errorf("run -v = %v, want a refusal", err)
	}
}
