package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// validConfig is a small configuration that decodes and validates; the
// cases below add to it.
const validConfig = `[[listener]]
address = "127.0.0.1:8443"
[[listener.route]]
upstream = "app"

[[upstream]]
name = "app"
servers = ["127.0.0.1:9000"]
`

// TestLoadConfigLimits runs pathological files through loadConfig: each is
// refused with a *configError naming the file (and line), or, for the
// files that only look pathological, accepted.
func TestLoadConfigLimits(t *testing.T) {
	deep := strings.Repeat("[", 100)
	padded := validConfig + "# padding\n"
	padded += strings.Repeat("#", maxConfigSize-len(padded)-1) + "\n"
	for _, tc := range []struct {
		name string
		doc  string
		want string // substring of the error, with {{file}}; "" means accepted
	}{
		{
			name: "deeply nested arrays",
			doc:  "a = " + strings.Repeat("[", 10_000),
			want: "{{file}}:1: nesting deeper than 64 arrays/inline tables",
		},
		{
			name: "deeply nested arrays after other lines",
			doc:  "drain_timeout = \"1s\" # [[[[\n\n[log]\nlevel = \"info\"\nx = " + strings.Repeat("[", 10_000),
			want: "{{file}}:5: nesting deeper than 64 arrays/inline tables",
		},
		{
			name: "deeply nested inline tables",
			doc:  "a = " + strings.Repeat("{b = ", 1_000),
			want: "{{file}}:1: nesting deeper than 64 arrays/inline tables",
		},
		{
			name: "inline tables in arrays",
			doc:  "a = " + strings.Repeat("[{b = ", 40),
			want: "{{file}}:1: nesting deeper than 64 arrays/inline tables",
		},
		{
			name: "65 levels, closed",
			doc:  "a = " + strings.Repeat("[", 65) + strings.Repeat("]", 65) + "\n",
			want: "{{file}}:1: nesting deeper than 64 arrays/inline tables",
		},
		{
			// 64 levels pass the limit and reach the decoder, which
			// finds that a is no key of sluice's.
			name: "64 levels, closed",
			doc:  "a = " + strings.Repeat("[", 64) + strings.Repeat("]", 64) + "\n",
			want: "{{file}}:1: a: unknown key",
		},
		{
			name: "dotted key of many parts",
			doc:  "a" + strings.Repeat(".a", 2_000) + " = 1\n",
			want: "{{file}}:1: key path longer than 64 parts",
		},
		{
			name: "table header of many parts",
			doc:  "drain_timeout = \"1s\"\n[" + strings.Repeat("a.", 2_000) + "a]\n",
			want: "{{file}}:2: key path longer than 64 parts",
		},
		{
			name: "dotted key in an inline table",
			doc:  "a = { " + strings.Repeat("b.", 100) + "c = 1 }\n",
			want: "{{file}}:1: key path longer than 64 parts",
		},
		{
			// 20 levels, but a key path of 81 parts.
			name: "key path through inline tables",
			doc:  "a = " + strings.Repeat("{b.b.b.b = ", 20) + "1" + strings.Repeat("}", 20) + "\n",
			want: "{{file}}:1: key path longer than 64 parts",
		},
		{
			name: "key path through a table header",
			doc:  "[t" + strings.Repeat(".t", 39) + "]\nk" + strings.Repeat(".k", 29) + " = 1\n",
			want: "{{file}}:2: key path longer than 64 parts",
		},
		{
			name: "key path through arrays of inline tables",
			doc:  "a.a = [[" + strings.Repeat("{b.b.b.b = [{c = ", 13) + "1",
			want: "{{file}}:1: key path longer than 64 parts",
		},
		{
			name: "brackets and dots in strings and comments",
			doc: "# " + deep + " {{{{ a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a\n" +
				"[[listener]] # " + deep + "\n" +
				`name = "` + deep + ` \" ` + deep + ` '''"` + "\n" +
				`address = "127.0.0.1:8443" # ` + deep + "\n" +
				"[listener.tls]\n" +
				"alpn = [\n" +
				`  "` + deep + `",` + "\n" +
				`  '` + deep + `\',` + "\n" +
				`  """` + "\n" + deep + ` "" \""" ` + deep + `""""",` + "\n" +
				`  '''` + "\n" + deep + ` '' ` + deep + `''''',` + "\n" +
				"  # " + deep + "\n" +
				"]\n" +
				"[[listener.route]]\n" +
				"sni = ['a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a']\n" +
				`upstream = "app"` + "\n" +
				"[[upstream]]\n" +
				`name = "app"` + "\n" +
				`servers = ["127.0.0.1:9000"]` + "\n" +
				"protocols = [\n" +
				`  "` + deep + `",` + "\n" +
				`  '` + deep + `\',` + "\n" +
				`  """` + "\n" + deep + ` "" \""" ` + deep + `""""",` + "\n" +
				`  '''` + "\n" + deep + ` '' ` + deep + `''''',` + "\n" +
				"  # " + deep + "\n" +
				"]\n",
		},
		{
			name: "a file of exactly 256 KiB",
			doc:  padded,
		},
		{
			name: "oversized file",
			doc:  validConfig + strings.Repeat("#", 5<<20-len(validConfig)),
			want: "{{file}}: 5242880 bytes: larger than the 256 KiB a configuration may be",
		},
		{
			name: "NUL bytes",
			doc:  "\x00\x00\x00\x00",
			want: "{{file}}:1: files cannot contain NULL bytes",
		},
		{
			name: "NUL byte in a string",
			doc:  "drain_timeout = \"1s\x00\"\n",
			want: "{{file}}:1: drain_timeout: TOML files cannot contain control characters",
		},
		{
			name: "invalid UTF-8",
			doc:  "# \xff\xfe\n" + validConfig,
			want: "{{file}}:1: invalid UTF-8 byte: 0xff",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeConfig(t, tc.doc)
			cfg, _, err := loadConfig(file)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("loadConfig: %v", err)
				}
				if len(cfg.Listeners) != 1 || len(cfg.Upstreams) != 1 {
					t.Fatalf("decoded %d listeners and %d upstreams, want 1 and 1", len(cfg.Listeners), len(cfg.Upstreams))
				}
				if err := cfg.Validate(); err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("loadConfig accepted the file, want an error containing %q", tc.want)
			}
			if want := strings.ReplaceAll(tc.want, "{{file}}", file); !strings.Contains(err.Error(), want) {
				t.Errorf("loadConfig error:\n got %.300q\nwant %q", err, want)
			}
			var ce *configError
			for _, e := range flatten(err) {
				if ce, _ = e.(*configError); ce == nil {
					t.Errorf("error %.200q is %T, want *configError", e, e)
				}
			}
		})
	}
}

// TestLoadConfigStringsAndComments checks that what checkNesting skips
// really is a string or comment to the decoder: the brackets land in the
// values, unchanged.
func TestLoadConfigStringsAndComments(t *testing.T) {
	deep := strings.Repeat("[", 80)
	doc := "[[listener]]\n" +
		`name = "` + deep + ` \" # {"` + "\n" +
		`address = "127.0.0.1:8443"` + "\n" +
		"[listener.tls]\n" +
		"alpn = ['" + deep + `\', """` + "\n" + deep + `"""", '''` + deep + "''''']\n" +
		"[[listener.route]]\n" +
		`upstream = "app"` + "\n" +
		"[[upstream]]\n" +
		`name = "app"` + "\n" +
		`servers = ["127.0.0.1:9000"]` + "\n"
	cfg, _, err := loadConfig(writeConfig(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Listeners[0].Name, deep+` " # {`; got != want {
		t.Errorf("name = %q, want %q", got, want)
	}
	alpn := cfg.Listeners[0].TLS.ALPN
	want := []string{deep + `\`, deep + `"`, deep + "''"}
	if strings.Join(alpn, "|") != strings.Join(want, "|") {
		t.Errorf("alpn = %q, want %q", alpn, want)
	}
}

// TestCheckNestingValues checks that dots and brackets in values that are
// not strings (floats, dates, arrays of tables) do not count as nesting.
func TestCheckNestingValues(t *testing.T) {
	for _, tc := range []struct{ name, doc string }{
		{"floats and dates", "f = [" + strings.Repeat("1.5, ", 100) + "]\nd = 1979-05-27T07:32:00.999999-07:00\n"},
		{"array of tables headers", strings.Repeat("[[a.b.c]]\nx = 1.0\n", 100)},
		{"many shallow arrays", strings.Repeat("a = [[[1]]]\n", 100)},
		{"nested 64 deep", "a = " + strings.Repeat("[", 64) + strings.Repeat("]", 64)},
		{"inline tables side by side", "a = [" + strings.Repeat("{b.c = {d = [1.5]}}, ", 100) + "]\n"},
		{"multi-line array", "a = [\n" + strings.Repeat("  [1.5, 2.5], # c.c.c\n", 100) + "]\n"},
		{"key of 64 parts", "a" + strings.Repeat(".a", 63) + " = 1\n"},
		{"key path of 64 parts", "[t" + strings.Repeat(".t", 31) + "]\nk" + strings.Repeat(".k", 29) + " = { x = { y = 1 } }\n"},
		{"each table starts again", strings.Repeat("[t"+strings.Repeat(".t", 40)+"]\nk"+strings.Repeat(".k", 20)+" = 1\n", 3)},
		{"inline tables side by side, deep keys", "a = [" + strings.Repeat("{b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b = 1}, ", 10) + "]\n"},
		{"quoted keys", `"a.b.c[" = 1` + "\n" + `'[[[' = 2` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkNesting("f.toml", []byte(tc.doc)); err != nil {
				t.Errorf("checkNesting: %v", err)
			}
		})
	}
}

// TestLoadConfigDevice reads a configuration from a device that never
// ends: it is cut at the limit rather than read whole.
func TestLoadConfigDevice(t *testing.T) {
	const dev = "/dev/zero"
	if _, err := os.Stat(dev); err != nil {
		t.Skip(err)
	}
	_, _, err := loadConfig(dev)
	want := dev + ": more than 262144 bytes: larger than the 256 KiB a configuration may be"
	if err == nil || err.Error() != want {
		t.Errorf("loadConfig(%s) = %v, want %q", dev, err, want)
	}
}

// TestRunCheckPathologicalConfig runs the whole "sluice -check" on files
// that used to crash the decoder (a stack overflow for 4 MB of "["): run
// returns an error, so main exits 1, and says nothing is ok.
func TestRunCheckPathologicalConfig(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"4 MB of [", "a = " + strings.Repeat("[", 4_000_000), ": 4000004 bytes: larger than the 256 KiB"},
		{"200 KB of [", "a = " + strings.Repeat("[", 200_000), ":1: nesting deeper than 64"},
		{"200 KB of {", "a = " + strings.Repeat("{b=", 65_000), ":1: nesting deeper than 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "deep.toml")
			writeFile(t, file, tc.doc)
			var stdout, stderr bytes.Buffer
			err := run([]string{"-check", "-config", file}, &stdout, &stderr, nil)
			if err == nil {
				t.Fatalf("run -check succeeded; stdout %q", stdout.String())
			}
			if want := file + tc.want; !strings.Contains(err.Error(), want) {
				t.Errorf("run -check = %.300q, want it to contain %q", err, want)
			}
			if strings.Contains(stdout.String(), "is ok") {
				t.Errorf("stdout = %q", stdout.String())
			}
		})
	}
}

// FuzzCheckNesting checks that checkNesting refuses only documents that
// really nest deeper than maxNesting: when the decoder can read a refused
// document, its tables and arrays go deeper than that.
func FuzzCheckNesting(f *testing.F) {
	for _, seed := range []string{
		validConfig,
		"a = " + strings.Repeat("[", 65) + strings.Repeat("]", 65),
		"a = " + strings.Repeat("[", 64) + strings.Repeat("]", 64),
		"a = " + strings.Repeat("{b.b.b.b = ", 20) + "1" + strings.Repeat("}", 20),
		"[t" + strings.Repeat(".t", 39) + "]\nk" + strings.Repeat(".k", 29) + " = 1\n",
		`s = """ [[[ "" \""" [[[""""` + "\n" + `l = ''' {{{ '' {{{'''''` + "\n# [[[[\n",
		"f = [1.5, 2.5e3, 1979-05-27T07:32:00Z]\n[[a.b]]\nx = {y.z = [{w = 1}]}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<10 {
			return // deep enough for every rule; decoding more is slow
		}
		err := checkNesting("f.toml", data)
		if err == nil {
			return
		}
		var v map[string]any
		if _, derr := toml.Decode(string(data), &v); derr != nil {
			return // not TOML: any verdict will do
		}
		if d := depth(v); d <= maxNesting {
			t.Errorf("checkNesting refused a document %d deep: %v", d, err)
		}
	})
}

// depth is how deep tables and arrays nest in a decoded TOML value.
func depth(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			d = max(d, depth(e))
		}
	case []map[string]any: // counted as deep as it looks: the limits count less
		for _, e := range v {
			d = max(d, depth(e))
		}
	case []any:
		for _, e := range v {
			d = max(d, depth(e))
		}
	default:
		return 0
	}
	return d + 1
}
