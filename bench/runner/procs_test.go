package main

import (
	"os"
	"syscall"
	"testing"
)

// TestCPUTicks checks the busy and total ticks read from /proc/stat's
// line for one CPU: idle and iowait are not busy, guest time (counted in
// user time already) is not added twice, and a missing CPU is an error.
func TestCPUTicks(t *testing.T) {
	stat := []byte("cpu  10 0 10 100 5 0 0 0 0 0\n" +
		"cpu0 4 0 6 50 2 0 0 0 0 0\n" +
		"cpu1 7 1 3 40 9 2 1 0 5 0\n" +
		"intr 1 2 3\n")
	busy, total, err := cpuTicks(stat, "1")
	if err != nil {
		t.Fatal(err)
	}
	if busy != 14 || total != 63 {
		t.Errorf("cpu1: busy %d of %d ticks, want 14 of 63", busy, total)
	}
	if _, _, err := cpuTicks(stat, "2"); err == nil {
		t.Error("cpu2: no error for a CPU /proc/stat lacks")
	}
}

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
