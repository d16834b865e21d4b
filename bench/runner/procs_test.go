package main

import (
	"os"
	"syscall"
	"testing"
)

// TestReadStatSelf reads this process's own stat and checks its minor
// faults against getrusage's count of the same, read before and after.
func TestReadStatSelf(t *testing.T) {
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	if st.ppid != os.Getppid() {
		t.Errorf("ppid %d, want %d", st.ppid, os.Getppid())
	}
	if st.minflt < uint64(before.Minflt) || st.minflt > uint64(after.Minflt) {
		t.Errorf("minor faults %d, want between getrusage's %d and %d", st.minflt, before.Minflt, after.Minflt)
	}
}

// TestUsageSince checks the difference of two readings, and that a
// counter that went down (a process gone from the tree) counts as
// nothing instead of wrapping around.
func TestUsageSince(t *testing.T) {
	before := usage{utime: 100, stime: 40, minflt: 5000}
	if got, want := (usage{utime: 350, stime: 90, minflt: 7000}).since(before), (usage{250, 50, 2000}); got != want {
		t.Errorf("since = %+v, want %+v", got, want)
	}
	if got, want := (usage{utime: 350, stime: 30, minflt: 4000}).since(before), (usage{250, 0, 0}); got != want {
		t.Errorf("since, two counters down = %+v, want %+v", got, want)
	}
	if got := (usage{utime: 250, stime: 50}).cpuSeconds(); got != 3 {
		t.Errorf("cpuSeconds of 300 ticks = %v, want 3", got)
	}
	if got, ok := (usage{utime: 30, stime: 10}).sysShare(); !ok || got != 0.25 {
		t.Errorf("sysShare of 30 user and 10 system ticks = %v, %v; want 0.25, true", got, ok)
	}
	if _, ok := (usage{minflt: 3}).sysShare(); ok {
		t.Error("sysShare of no CPU time: ok")
	}
}
