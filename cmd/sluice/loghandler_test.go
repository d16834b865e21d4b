package main

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"sluice/l4"
)

// TestLogsApply: a reload's log format and level reach loggers made
// before it, those with attributes and groups too.
func TestLogsApply(t *testing.T) {
	checkLeaks(t)
	var out mainSafeBuffer
	l := newLogger(&out, l4.LogConfig{})
	derived := l.logger.With("listener", "web").WithGroup("g")
	derived.Debug("hidden")
	derived.Info("text line", "k", 1)
	l.apply(l4.LogConfig{Format: "json", Level: "debug"})
	derived.Debug("json line", "k", 2)
	l.logger.Info("root line")
	if err := l.queue.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		`level=INFO msg="text line" listener=web g.k=1`,
		`"level":"DEBUG","msg":"json line","listener":"web","g":{"k":2}}`,
		`"level":"INFO","msg":"root line"}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "hidden") {
		t.Errorf("a debug line before the level changed was written:\n%s", got)
	}
}

// TestLogsJSONDurationSeconds: the JSON format writes every duration as a
// number of seconds, at the top level, added by With and nested in groups;
// the text format keeps Go's duration strings.
func TestLogsJSONDurationSeconds(t *testing.T) {
	checkLeaks(t)
	var out mainSafeBuffer
	l := newLogger(&out, l4.LogConfig{Format: "json"})
	l.logger.With("drain_timeout", 30*time.Second).WithGroup("g").Info("json line",
		"dur", 1500*time.Millisecond,
		"n", 7,
		slog.Group("retry", "in", 102467592*time.Nanosecond))
	l.apply(l4.LogConfig{Format: "text"})
	l.logger.Info("text line", "dur", 1500*time.Millisecond)
	if err := l.queue.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	jsonLine, textLine, _ := strings.Cut(out.String(), "\n")
	var got struct {
		DrainTimeout any `json:"drain_timeout"`
		G            struct {
			Dur   any `json:"dur"`
			N     any `json:"n"`
			Retry struct {
				In any `json:"in"`
			} `json:"retry"`
		} `json:"g"`
	}
	if err := json.Unmarshal([]byte(jsonLine), &got); err != nil {
		t.Fatalf("decode %q: %v", jsonLine, err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"drain_timeout", got.DrainTimeout, 30.0},
		{"g.dur", got.G.Dur, 1.5},
		{"g.retry.in", got.G.Retry.In, 0.102468},
		{"g.n", got.G.N, 7.0}, // an int stays what it was
	} {
		if c.got != c.want {
			t.Errorf("%s = %v (%T), want %v", c.name, c.got, c.got, c.want)
		}
	}
	if !strings.Contains(jsonLine, `"in":0.102468}`) {
		t.Errorf("JSON line does not write 0.102468 plainly:\n%s", jsonLine)
	}
	if want := `msg="text line" dur=1.5s`; !strings.Contains(textLine, want) {
		t.Errorf("text line lacks %s:\n%s", want, textLine)
	}
}

// TestJSONSecondsRounding: durations round to the microsecond and encode
// with at most six decimals and no exponent.
func TestJSONSecondsRounding(t *testing.T) {
	for _, c := range []struct {
		name string
		d    time.Duration
		want string
	}{
		{"zero", 0, "0"},
		{"below half a microsecond", 499 * time.Nanosecond, "0"},
		{"half a microsecond", 500 * time.Nanosecond, "0.000001"},
		{"milliseconds", 102467592 * time.Nanosecond, "0.102468"},
		{"whole seconds", 30 * time.Second, "30"},
		{"hours", 3*time.Hour + 25*time.Minute + 45*time.Second + 678901*time.Microsecond, "12345.678901"},
		{"negative", -1500 * time.Millisecond, "-1.5"},
		{"largest", time.Duration(1<<63 - 1), "9223372036.854776"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(jsonSeconds(c.d))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Errorf("jsonSeconds(%v) encodes as %s, want %s", c.d, b, c.want)
			}
		})
	}
}
