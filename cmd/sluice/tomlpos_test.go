package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// keyLinesConfig is a realistic sluice configuration; line numbers in the
// tests below refer to it.
const keyLinesConfig = `drain_timeout = "30s"
[log]
format = "json"
[[listener]]
name = "public"
address = "0.0.0.0:8443"
[listener.tls]
certificates = [
  { cert = "a.pem", key = "a.key" },
  { cert = "b.pem", key = "b.key" },
]
client_auth = "none" # a comment with = and [x]
[[listener.route]]
sni = ["a.example.com"]
upstream = "app"
[[listener.route]]
upstream = "fallback"
[[listener]]
name = "second"
tls.min_version = "1.3"
[[listener.route]]
upstream = "app"
[[upstream]]
name = "app"
servers = ["127.0.0.1:9000", "unix:/run/app.sock"]
send_proxy = "v2"
`

// keyLinesTricky exercises strings, comments, quoted keys, multi-line values
// and whitespace in headers.
const keyLinesTricky = `# leading comment with key = "x" and [table]
title = "a # not a comment [x]"
'lit#eral' = 'c:\path[0] # x = y'
"a.b" = 1
a.c = 2
esc = "say \"#[hi]\" = \\" # comment
multi = """
not_a_key = 1
[not.a.table]
\"""
"""
lit = '''
x = [
'''
after = true
[ srv . "x.y" ]
port = 1
[[ job ]]
  [[job]] # second job
tasks = [ # comment inside an array
  { name = "n1", "k" = 2 },

  [ 1, 2 ], # nested
  "s]#",
]
[job.meta]
k = 1
[[job.step]]
run = "x"
`

func TestScanKeyLines(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		path string
		want int
	}{
		{keyLinesConfig, "drain_timeout", 1},
		{keyLinesConfig, "log", 2},
		{keyLinesConfig, "log.format", 3},
		{keyLinesConfig, "listener[0]", 4},
		{keyLinesConfig, "listener[0].name", 5},
		{keyLinesConfig, "listener[0].address", 6},
		{keyLinesConfig, "listener[0].tls", 7},
		{keyLinesConfig, "listener[0].tls.certificates", 8},
		{keyLinesConfig, "listener[0].tls.certificates[0]", 9},
		{keyLinesConfig, "listener[0].tls.certificates[0].key", 9},
		{keyLinesConfig, "listener[0].tls.certificates[1]", 10},
		{keyLinesConfig, "listener[0].tls.certificates[1].cert", 10},
		{keyLinesConfig, "listener[0].tls.client_auth", 12},
		{keyLinesConfig, "listener[0].route[0]", 13},
		{keyLinesConfig, "listener[0].route[0].sni", 14},
		{keyLinesConfig, "listener[0].route[0].sni[0]", 14},
		{keyLinesConfig, "listener[0].route[0].upstream", 15},
		{keyLinesConfig, "listener[0].route[1]", 16},
		{keyLinesConfig, "listener[0].route[1].upstream", 17},
		{keyLinesConfig, "listener[1]", 18},
		{keyLinesConfig, "listener[1].name", 19},
		{keyLinesConfig, "listener[1].tls", 20},
		{keyLinesConfig, "listener[1].tls.min_version", 20},
		{keyLinesConfig, "listener[1].route[0]", 21},
		{keyLinesConfig, "listener[1].route[0].upstream", 22},
		{keyLinesConfig, "upstream[0]", 23},
		{keyLinesConfig, "upstream[0].name", 24},
		{keyLinesConfig, "upstream[0].servers", 25},
		{keyLinesConfig, "upstream[0].servers[1]", 25},
		{keyLinesConfig, "upstream[0].send_proxy", 26},

		// Fallbacks to the nearest ancestor that was seen.
		{keyLinesConfig, "listener[0].tls.certificates[0].bogus", 9},
		{keyLinesConfig, "listener[0].tls.certificates[7].cert", 8},
		{keyLinesConfig, "upstream[0].servers[1].x", 25},
		{keyLinesConfig, "listener[1].route[0].sni", 21},
		{keyLinesConfig, "listener[2].name", 0},
		{keyLinesConfig, "log.level", 2},
		{keyLinesConfig, "nope", 0},
		{keyLinesConfig, "", 0},

		{keyLinesTricky, "title", 2},
		{keyLinesTricky, "lit#eral", 3},
		{keyLinesTricky, "a.b", 4},
		{keyLinesTricky, "a.c", 5},
		{keyLinesTricky, "esc", 6},
		{keyLinesTricky, "multi", 7},
		{keyLinesTricky, "not_a_key", 0},
		{keyLinesTricky, "not.a.table", 0},
		{keyLinesTricky, "lit", 12},
		{keyLinesTricky, "x", 0},
		{keyLinesTricky, "after", 15},
		{keyLinesTricky, "srv.x.y", 16},
		{keyLinesTricky, "srv.x.y.port", 17},
		{keyLinesTricky, "job[0]", 18},
		{keyLinesTricky, "job[1]", 19},
		{keyLinesTricky, "job[1].tasks", 20},
		{keyLinesTricky, "job[1].tasks[0].k", 21},
		{keyLinesTricky, "job[1].tasks[1]", 23},
		{keyLinesTricky, "job[1].tasks[1][1]", 23},
		{keyLinesTricky, "job[1].tasks[2]", 24},
		{keyLinesTricky, "job[1].meta", 26},
		{keyLinesTricky, "job[1].meta.k", 27},
		{keyLinesTricky, "job[1].step[0].run", 29},
		{keyLinesTricky, "job[0].step", 18},
	} {
		name := "config/"
		if tc.doc == keyLinesTricky {
			name = "tricky/"
		}
		t.Run(name+tc.path, func(t *testing.T) {
			if got := scanKeyLines([]byte(tc.doc)).line(tc.path); got != tc.want {
				t.Errorf("line(%q) = %d, want %d", tc.path, got, tc.want)
			}
		})
	}
}

func TestKeyLinesLineOf(t *testing.T) {
	k := scanKeyLines([]byte(keyLinesConfig))
	tricky := scanKeyLines([]byte(keyLinesTricky))
	for _, tc := range []struct {
		k    *keyLines
		key  []string
		want int
	}{
		{k, []string{"drain_timeout"}, 1},
		{k, []string{"listener"}, 4},
		{k, []string{"listener", "tls"}, 7},
		{k, []string{"listener", "tls", "certificates"}, 8},
		{k, []string{"listener", "tls", "certificates", "cert"}, 9},
		{k, []string{"listener", "tls", "min_version"}, 20},
		{k, []string{"listener", "route", "upstream"}, 15},
		{k, []string{"upstream", "send_proxy"}, 26},
		{k, []string{"listener", "tls", "bogus"}, 0},
		{k, nil, 0},
		{tricky, []string{"a.b"}, 4},
		{tricky, []string{"a", "b"}, 0},
		{tricky, []string{"a", "c"}, 5},
		{tricky, []string{"srv", "x.y", "port"}, 17},
		{tricky, []string{"job", "tasks", "name"}, 21},
		{(*keyLines)(nil), []string{"a"}, 0},
	} {
		t.Run(strings.Join(tc.key, "/"), func(t *testing.T) {
			if got := tc.k.lineOf(tc.key); got != tc.want {
				t.Errorf("lineOf(%q) = %d, want %d", tc.key, got, tc.want)
			}
		})
	}
}

// TestKeyLinesMatchParser checks that the fixtures are valid TOML and that
// every key the real parser reports has a line.
func TestKeyLinesMatchParser(t *testing.T) {
	for name, doc := range map[string]string{"config": keyLinesConfig, "tricky": keyLinesTricky} {
		t.Run(name, func(t *testing.T) {
			var v map[string]any
			md, err := toml.Decode(doc, &v)
			if err != nil {
				t.Fatal(err)
			}
			k := scanKeyLines([]byte(doc))
			for _, key := range md.Keys() {
				if k.lineOf(key) == 0 {
					t.Errorf("lineOf(%q) = 0", []string(key))
				}
			}
		})
	}
}

func TestKeyLinesInvalid(t *testing.T) {
	for _, tc := range []struct {
		doc, path string
		want      int
	}{
		{"a = \nb = 2", "b", 2},
		{"a = \"unterminated\nb = 2", "b", 2},
		{"[unclosed\nb = 2", "b", 2},
		{"a = [1,\nb = 2", "a", 1},
		{"= 1\n[[t]]\n[[t]\nx = 1", "t[0].x", 4},
		{"a = {b = 1 c = 2}\nd = 3", "d", 2},
		{"\ufeffa = 1", "a", 1},
		{"\xfe\xffa = 1", "a", 1},
		{"a = '''\nb = 1", "b", 0},
		{strings.Repeat("[", 100000), "a", 0},
		{"a = " + strings.Repeat("[", 100000), "a", 1},
	} {
		name := tc.doc
		if len(name) > 20 {
			name = name[:20]
		}
		t.Run(name, func(t *testing.T) {
			if got := scanKeyLines([]byte(tc.doc)).line(tc.path); got != tc.want {
				t.Errorf("line(%q) = %d, want %d", tc.path, got, tc.want)
			}
		})
	}
}

func FuzzScanKeyLines(f *testing.F) {
	for _, seed := range []string{keyLinesConfig, keyLinesTricky, "a = [{b = [{c = 1}]}]", `"\" = 1`, "x = '''''", "[[a]]\n[a.b]\n[[a]]"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k := scanKeyLines(data)
		lines := bytes.Count(data, []byte("\n")) + 1
		for path, n := range k.lines {
			if n < 1 || n > lines {
				t.Fatalf("line(%q) = %d, outside 1..%d", path, n, lines)
			}
			k.line(path + ".x[3]")
		}
		k.line(string(data))
		k.lineOf(strings.Split(string(data), "."))
	})
}
