package tlsterm

import (
	"crypto/sha256"
	"fmt"
	"strings"
)

// fileStamp identifies what a set of files held: for each, the SHA-256 of
// its content or the error reading it gave. Reading follows symlinks, so
// the swap of a Kubernetes Secret volume's ..data link, which leaves the
// names in place and points them at new files, changes the stamp; and
// unlike a stat, content cannot be missed by a file system whose
// timestamps are coarser than the time between two writes. The files are
// small (certificates, keys, CA bundles, key files), so a look costs a
// few reads of a few KiB.
type fileStamp string

// stampFiles stamps paths.
func stampFiles(paths ...string) fileStamp {
	var b strings.Builder
	for _, p := range paths {
		data, err := readBounded(p, maxPEMBytes, "a certificate, key, CA or ticket key file")
		b.WriteString(string(stampOf(p, data, err)))
	}
	return fileStamp(b.String())
}

// stampOf is the stamp of the file path, read as data or failing with
// err, so that a caller that reads the file anyway stamps what it read.
func stampOf(path string, data []byte, err error) fileStamp {
	if err != nil {
		return fileStamp(fmt.Sprintf("%s: %v\n", path, err))
	}
	return fileStamp(fmt.Sprintf("%s %x\n", path, sha256.Sum256(data)))
}
