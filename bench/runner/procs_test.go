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
