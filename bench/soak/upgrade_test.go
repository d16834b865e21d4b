package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("before the tail\n")
	tail, err := openTail(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tail.close()
	running, exited := make(chan struct{}), make(chan struct{})
	close(exited)
	soon := func() time.Time { return time.Now().Add(200 * time.Millisecond) }

	f.WriteString("one\ntw")
	if line, err := tail.next(soon(), running); line != "one" || err != nil {
		t.Fatalf("next = %q, %v; want the first line after opening", line, err)
	}
	if line, err := tail.next(soon(), running); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("next = %q, %v; want a timeout on half a line", line, err)
	}
	f.WriteString("o\nthree\n")
	if line, err := tail.next(soon(), exited); line != "two" || err != nil {
		t.Fatalf("next = %q, %v; want the line completed", line, err)
	}
	if line, err := tail.next(soon(), exited); line != "three" || err != nil {
		t.Fatalf("next = %q, %v; want what an exited writer wrote", line, err)
	}
	if line, err := tail.next(soon(), exited); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("next = %q, %v; want the writer's exit", line, err)
	}
}
