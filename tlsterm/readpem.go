package tlsterm

import (
	"fmt"
	"io"
	"os"
)

// maxPEMBytes bounds a certificate, key or CA file: a chain of a few
// certificates is a few KiB, a large CA bundle a few hundred.
const maxPEMBytes = 4 << 20

// readPEM reads a PEM file named in the configuration.
func readPEM(path string) ([]byte, error) {
	return readBounded(path, maxPEMBytes, "a certificate, key or CA file")
}

// readBounded reads a file named in the configuration. A path that names
// something other than a regular file (a device, a FIFO) or a file past max
// bytes is an error, so that a mistyped path cannot make sluice read
// without end or wait forever; what says what the file should have been.
func readBounded(path string, max int64, what string) ([]byte, error) {
	// Stat before open: opening a FIFO waits for a writer.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		size := fmt.Sprintf("%d KiB", max>>10)
		if max >= 1<<20 {
			size = fmt.Sprintf("%d MiB", max>>20)
		}
		return nil, fmt.Errorf("%s: larger than %s: not %s", path, size, what)
	}
	return b, nil
}
