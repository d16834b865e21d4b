package tlsterm

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// maxPEMBytes bounds a certificate, key or CA file: a chain of a few
// certificates is a few KiB, a large CA bundle a few hundred.
const maxPEMBytes = 4 << 20

// readPEM reads a PEM file named in the configuration. A path that names
// something other than a regular file (a device, a FIFO) or a file past
// maxPEMBytes is an error, so that a mistyped path cannot make sluice read
// without end or wait forever.
func readPEM(path string) ([]byte, error) {
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
	b, err := io.ReadAll(io.LimitReader(f, maxPEMBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMBytes {
		return nil, errors.New(path + ": larger than 4 MiB: not a certificate, key or CA file")
	}
	return b, nil
}
