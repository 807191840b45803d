//go:build unix

package auth

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on path (created 0600 when missing)
// and returns its release. The lock is on a file of its own: tokens.json
// is replaced by rename, so a lock on it would not hold across writes.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

func inode(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int64(s.Ino)
	}
	return 0
}
