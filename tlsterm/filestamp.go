package tlsterm

import (
	"fmt"
	"os"
	"strings"
)

// fileStamp identifies what a set of files held when they were read,
// without reading them again: for each, its size, modification time and
// (where the system has them) device, inode and change time, or the error
// stat gave. Stat follows symlinks, so the swap of a Kubernetes Secret
// volume's ..data link, which leaves the names in place and points them at
// new files, changes the stamp.
type fileStamp string

// stampFiles stamps paths.
func stampFiles(paths ...string) fileStamp {
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p, err)
			continue
		}
		fmt.Fprintf(&b, "%s %d %d %s\n", p, fi.Size(), fi.ModTime().UnixNano(), statIdentity(fi))
	}
	return fileStamp(b.String())
}
