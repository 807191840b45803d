package isolation

import (
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// mountRoot reports whether path is the root of a mount (statx's
// STATX_ATTR_MOUNT_ROOT, Linux 5.8+); false when it cannot tell.
func mountRoot(path string) bool {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, 0, &st); err != nil {
		return false
	}
	return st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
}

// diskBytes is the space a file occupies (st_blocks are 512-byte units).
func diskBytes(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
