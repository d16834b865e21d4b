package main

import (
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
