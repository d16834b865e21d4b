// Package grafana holds sluice's Grafana dashboard, sluice.json. Its test
// checks the dashboard offline against the metrics the README documents.
package grafana

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const dashboardFile = "sluice.json"

// readmePath is the README whose "Metrics" section lists every metric.
// SLUICE_README points the test at another file (a draft of that section).
func readmePath() string {
	if p := os.Getenv("SLUICE_README"); p != "" {
		return p
	}
	return "../../README.md"
}

// The parts of a Grafana dashboard the test looks at. Grafana's JSON has
// many more fields; encoding/json ignores them, but a field here with the
// wrong JSON type is an error.
type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"` // a string, or {"query": "..."}
	Definition string          `json:"definition"`
	Datasource *datasourceRef  `json:"datasource"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int                      `json:"id"`
	Type        string                   `json:"type"`
	Title       string                   `json:"title"`
	Datasource  *datasourceRef           `json:"datasource"`
	GridPos     struct{ X, Y, W, H int } `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []target `json:"targets"`
	Panels  []panel  `json:"panels"` // a collapsed row's panels
}

type target struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Datasource *datasourceRef `json:"datasource"`
}

// specMetric is one row of the README's metrics table.
type specMetric struct {
	name   string
	typ    string // counter, gauge, histogram, summary
	labels map[string]bool
}

// A query, with where it comes from for messages.
type query struct {
	where string
	expr  string
}

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkJSON(raw); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}

	queries := checkStructure(t, &d)

	spec := readSpec(t, readmePath())
	used := map[string]bool{}
	for _, q := range queries {
		for _, problem := range checkQuery(q.expr, spec, used) {
			t.Errorf("%s: %s\n\texpr: %s", q.where, problem, q.expr)
		}
	}
	var unused []string
	for name := range spec {
		if !used[name] {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Logf("documented metrics the dashboard does not show: %s", strings.Join(unused, ", "))
	}
}

// checkJSON is stricter than json.Unmarshal: it refuses a key twice in one
// object (Unmarshal keeps the last one silently) and anything after the
// dashboard's closing brace.
func checkJSON(raw []byte) error {
	if !json.Valid(raw) {
		var v any
		err := json.Unmarshal(raw, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(raw[:se.Offset], []byte("\n"))
			return fmt.Errorf("line %d: %v", line, err)
		}
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := noDuplicateKeys(dec, "$"); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the top-level value")
	}
	return nil
}

// noDuplicateKeys reads one value from dec, and fails if an object in it
// has a key twice.
func noDuplicateKeys(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key := k.(string)
			if seen[key] {
				return fmt.Errorf("%s: key %q appears twice", path, key)
			}
			seen[key] = true
			if err := noDuplicateKeys(dec, path+"."+key); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := noDuplicateKeys(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
}

// checkStructure checks what Grafana needs to import the dashboard and
// what the dashboard promises (a datasource variable used everywhere,
// instance and listener variables, units), and returns every PromQL query.
func checkStructure(t *testing.T, d *dashboard) []query {
	t.Helper()
	if d.SchemaVersion != 39 {
		t.Errorf("schemaVersion is %d, want 39", d.SchemaVersion)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q, uid %q: both must be set", d.Title, d.UID)
	}

	var queries []query
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		if _, dup := vars[v.Name]; dup {
			t.Errorf("template variable %q is defined twice", v.Name)
		}
		vars[v.Name] = v
		if v.Type != "query" {
			continue
		}
		if !isDatasourceVar(v.Datasource) {
			t.Errorf("template variable %q: datasource %+v, want uid ${datasource}", v.Name, v.Datasource)
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				t.Errorf("template variable %q: query is neither a string nor {\"query\": ...}: %s", v.Name, v.Query)
			}
			q = obj.Query
		}
		if q == "" {
			t.Errorf("template variable %q has no query", v.Name)
		}
		if v.Definition != "" && v.Definition != q {
			t.Errorf("template variable %q: definition %q differs from query %q", v.Name, v.Definition, q)
		}
		queries = append(queries, query{fmt.Sprintf("template variable %q", v.Name), q})
	}
	if v, ok := vars["datasource"]; !ok || v.Type != "datasource" || string(v.Query) != `"prometheus"` {
		t.Errorf(`no template variable "datasource" of type datasource for Prometheus (got %+v)`, v)
	}
	for _, name := range []string{"instance", "listener"} {
		if v, ok := vars[name]; !ok || v.Type != "query" {
			t.Errorf("no query template variable %q", name)
		}
	}

	ids := map[int]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if p.ID <= 0 {
				t.Errorf("%s: id must be positive", where)
			} else if other, dup := ids[p.ID]; dup {
				t.Errorf("%s: id also used by %q", where, other)
			}
			ids[p.ID] = p.Title
			if p.Title == "" {
				t.Errorf("%s: no title", where)
			}
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				t.Errorf("%s: gridPos %+v is outside Grafana's 24 columns", where, g)
			}
			if p.Type == "row" {
				if len(p.Targets) > 0 {
					t.Errorf("%s: a row with queries", where)
				}
				walk(p.Panels)
				continue
			}
			if !isDatasourceVar(p.Datasource) {
				t.Errorf("%s: datasource %+v, want uid ${datasource}", where, p.Datasource)
			}
			if (p.Type == "timeseries" || p.Type == "stat") && p.FieldConfig.Defaults.Unit == "" {
				t.Errorf("%s: no unit (fieldConfig.defaults.unit)", where)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no queries", where)
			}
			refs := map[string]bool{}
			for i, tg := range p.Targets {
				tw := fmt.Sprintf("%s target %d (refId %q)", where, i, tg.RefID)
				if tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("%s: refId empty or repeated", tw)
				}
				refs[tg.RefID] = true
				if tg.Datasource != nil && !isDatasourceVar(tg.Datasource) {
					t.Errorf("%s: datasource %+v, want uid ${datasource}", tw, tg.Datasource)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: empty expr", tw)
					continue
				}
				queries = append(queries, query{tw, tg.Expr})
			}
		}
	}
	walk(d.Panels)
	if len(queries) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	return queries
}

func isDatasourceVar(ds *datasourceRef) bool {
	return ds != nil && ds.Type == "prometheus" && ds.UID == "${datasource}"
}

var (
	// A PromQL string literal; metric names are looked for outside them.
	stringLit = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	// Whole identifiers, so that a name with a digit or a typo is not
	// silently cut to a shorter, documented one.
	ident     = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	ourPrefix = regexp.MustCompile(`^(?:sluice|process|go)_`)
	// A metric name with a label selector: name{...}.
	selector = regexp.MustCompile(`([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}`)
	matcher  = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*$`)
)

// Labels every series has, whatever the README's table says: the target
// labels Prometheus adds, and the name.
var targetLabels = map[string]bool{"instance": true, "job": true, "__name__": true}

// checkQuery returns what is wrong with expr: metric names the spec does
// not have, and label matchers on labels those metrics do not carry. It
// marks the spec metrics it uses in used.
func checkQuery(expr string, spec map[string]specMetric, used map[string]bool) []string {
	var problems []string
	names := map[string]bool{}
	for _, id := range ident.FindAllString(stringLit.ReplaceAllString(expr, `""`), -1) {
		if ourPrefix.MatchString(id) {
			names[id] = true
		}
	}
	for name := range names {
		m, suffix, ok := lookup(name, spec)
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s is not in the README's metrics table", name))
			continue
		}
		used[m.name] = true
		if m.typ == "histogram" && suffix == "" {
			problems = append(problems, fmt.Sprintf("%s is a histogram: query %s_bucket, _sum or _count", name, name))
		}
	}
	for _, s := range selector.FindAllStringSubmatch(expr, -1) {
		m, suffix, ok := lookup(s[1], spec)
		if !ok {
			continue // reported above, or not one of ours
		}
		for _, part := range splitMatchers(s[2]) {
			mm := matcher.FindStringSubmatch(part)
			if mm == nil {
				problems = append(problems, fmt.Sprintf("%s: cannot read the label matcher %q", s[1], strings.TrimSpace(part)))
				continue
			}
			label := mm[1]
			if !m.labels[label] && !targetLabels[label] && !(suffix == "_bucket" && label == "le") {
				problems = append(problems, fmt.Sprintf("%s has no label %q (the README lists %s)", s[1], label, labelList(m)))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// lookup finds name in spec, directly or as a histogram's (or summary's)
// _bucket, _sum or _count series.
func lookup(name string, spec map[string]specMetric) (m specMetric, suffix string, ok bool) {
	if m, ok := spec[name]; ok {
		return m, "", true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suf)
		if !found {
			continue
		}
		m, ok := spec[base]
		if ok && (m.typ == "histogram" || (m.typ == "summary" && suf != "_bucket")) {
			return m, suf, true
		}
	}
	return specMetric{}, "", false
}

// splitMatchers splits a selector's inside on the commas outside quotes.
func splitMatchers(s string) []string {
	var parts []string
	start, quote := 0, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == '\\':
			i++
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		case quote == 0 && c == ',':
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	parts = append(parts, s[start:])
	var out []string
	for _, p := range parts {
		if strings.TrimSpace(p) != "" { // a trailing comma is valid PromQL
			out = append(out, p)
		}
	}
	return out
}

func labelList(m specMetric) string {
	if len(m.labels) == 0 {
		return "none"
	}
	var l []string
	for k := range m.labels {
		l = append(l, k)
	}
	sort.Strings(l)
	return strings.Join(l, ", ")
}

var (
	heading = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
	oneName = regexp.MustCompile("^`([A-Za-z_:][A-Za-z0-9_:]*)`$")
	label   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// readSpec reads the metrics the README documents: the rows of the tables
// in its "Metrics" section whose header starts "name | type | labels"
// (or "metric | type | labels"), each row's first cell a metric name in
// backticks.
func readSpec(t *testing.T, path string) map[string]specMetric {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the metric names are checked against the README's Metrics section, and %v (SLUICE_README names another file)", err)
	}
	defer f.Close()

	var section []string
	level, fence := 0, false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
		}
		if h := heading.FindStringSubmatch(line); h != nil && !fence {
			if level == 0 && strings.EqualFold(h[2], "Metrics") {
				level = len(h[1])
				continue
			}
			if level > 0 && len(h[1]) <= level {
				break
			}
		}
		if level > 0 {
			section = append(section, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if level == 0 {
		t.Fatalf(`%s has no "### Metrics" section, so the dashboard's metric names cannot be checked. `+
			"The section lists every metric as a table row, | `sluice_listener_connections` | gauge | `listener` | ... |; "+
			"add it to the README, or point SLUICE_README at a draft of it.", path)
	}

	spec := map[string]specMetric{}
	for i := 0; i < len(section); i++ {
		header := cells(section[i])
		if len(header) < 3 || i+1 >= len(section) || !isSeparator(section[i+1]) {
			continue
		}
		first := strings.ToLower(header[0])
		if (first != "name" && first != "metric") || strings.ToLower(header[1]) != "type" || strings.ToLower(header[2]) != "labels" {
			continue
		}
		for i += 2; i < len(section) && strings.HasPrefix(strings.TrimSpace(section[i]), "|"); i++ {
			row := cells(section[i])
			where := fmt.Sprintf("%s, Metrics table row %q", path, strings.TrimSpace(section[i]))
			if len(row) < 3 {
				t.Errorf("%s: fewer than 3 cells", where)
				continue
			}
			n := oneName.FindStringSubmatch(row[0])
			if n == nil {
				t.Errorf("%s: the first cell is not one metric name in backticks", where)
				continue
			}
			m := specMetric{name: n[1], typ: row[1], labels: map[string]bool{}}
			switch m.typ {
			case "counter", "gauge", "histogram", "summary":
			default:
				t.Errorf("%s: type %q is not counter, gauge, histogram or summary", where, m.typ)
			}
			if c := strings.TrimSpace(row[2]); c != "" && c != "—" && c != "-" && c != "none" {
				for _, l := range strings.Split(c, ",") {
					l = strings.Trim(strings.TrimSpace(l), "`")
					if !label.MatchString(l) {
						t.Errorf("%s: label %q in the labels cell is not a label name", where, l)
						continue
					}
					m.labels[l] = true
				}
			}
			if _, dup := spec[m.name]; dup {
				t.Errorf("%s: %s is listed twice", where, m.name)
			}
			spec[m.name] = m
		}
	}
	if len(spec) == 0 {
		t.Fatalf("%s: the Metrics section has no table with a header | name | type | labels | ... | and rows | `metric_name` | type | labels | ... |", path)
	}
	return spec
}

// cells splits a markdown table row into its trimmed cells; nil if line
// is not a row.
func cells(line string) []string {
	s := strings.TrimSpace(line)
	if !strings.HasPrefix(s, "|") {
		return nil
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "|"), "|")
	parts := strings.Split(s, "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

func isSeparator(line string) bool {
	c := cells(line)
	if c == nil {
		return false
	}
	for _, x := range c {
		if strings.Trim(x, ":-") != "" || !strings.Contains(x, "-") {
			return false
		}
	}
	return true
}
