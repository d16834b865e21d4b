package tlsterm

import (
	"fmt"
	"os"
	"syscall"
)

// statIdentity returns fi's device, inode and change time.
func statIdentity(fi os.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d:%d:%d.%d", st.Dev, st.Ino, st.Ctim.Sec, st.Ctim.Nsec)
}
