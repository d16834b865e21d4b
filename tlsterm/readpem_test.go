package tlsterm

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadPEMRefusesNonFiles: a device, a FIFO or an oversize file named
// as a certificate is an error at once, not an endless read or wait.
func TestReadPEMRefusesNonFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, maxPEMBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/dev/zero", "not a regular file"},
		{big, "larger than 4 MiB"},
	} {
		if _, err := readPEM(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("readPEM(%s) = %v, want %q", tc.path, err, tc.want)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := readPEM(fifo)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("readPEM(fifo) = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("readPEM(fifo) waits for a writer")
	}
}
