package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestChildren(t *testing.T) {
	p, err := Start("sleep", "sleep", []string{"10"}, filepath.Join(t.TempDir(), "sleep.log"))
	if err != nil {
		t.Skip(err)
	}
	want := fmt.Sprintf("%d (sleep)", p.Pid)
	if kids := Children(); !slices.Contains(kids, want) {
		t.Errorf("Children() = %q, want %q among them", kids, want)
	}
	if !Running(p.Pid) {
		t.Errorf("Running(%d) = false for a live child", p.Pid)
	}
	if err := p.Stop(5 * time.Second); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("Stop: %v, want signal: terminated", err)
	}
	if kids := Children(); slices.Contains(kids, want) {
		t.Errorf("Children() = %q after the child was reaped", kids)
	}
	if Running(p.Pid) {
		t.Errorf("Running(%d) = true after the child was reaped", p.Pid)
	}
	if Running(os.Getpid()) == false {
		t.Error("Running(self) = false")
	}
}

// TestAdopt follows a process this program did not start as its own
// child's parent would: Adopt polls until it can reap it.
func TestAdopt(t *testing.T) {
	p, err := Start("sleep", "sleep", []string{"10"}, filepath.Join(t.TempDir(), "sleep.log"))
	if err != nil {
		t.Skip(err)
	}
	defer p.Kill()
	a, err := Adopt("adopted sleep", p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Alive() {
		t.Fatal("an adopted live process is not Alive")
	}
	if err := a.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	// It is this program's child, so Start's Wait and the adopter's poll
	// race to reap it: the adopter knows the signal if it won, and reports
	// ErrExitUnknown if Start's Wait did (CI saw both).
	if ok, err := a.Exited(10 * time.Second); !ok || (err != ErrExitUnknown && (err == nil || err.Error() != "signal: killed")) {
		t.Fatalf("Exited = %v, %v; want true with signal: killed or ErrExitUnknown", ok, err)
	}
}
