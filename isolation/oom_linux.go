package isolation

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// oomEvents is an eventfd registered on one memory cgroup's
// memory.oom_control (cgroup v1): the kernel adds one to it for each OOM
// event in the cgroup, and once more when the cgroup is removed.
type oomEvents struct {
	dir string
	ino uint64 // dir's inode when registered: a restart makes a new cgroup at the same path
	efd int
}

// registerOOM registers an eventfd on dir's memory.oom_control. A cgroup
// without one (cgroup v2, no memory controller, already gone) is no error:
// there is nothing to watch, and it returns nil.
func registerOOM(dir string) (*oomEvents, error) {
	ino := dirInode(dir)
	if ino == 0 {
		return nil, nil
	}
	ctl, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return nil, nil
	}
	defer ctl.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	reg := fmt.Sprintf("%d %d", efd, ctl.Fd())
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0); err != nil {
		unix.Close(efd)
		return nil, fmt.Errorf("register on %s: %w", dir, err)
	}
	if dirInode(dir) != ino {
		unix.Close(efd)
		return nil, fmt.Errorf("%s was replaced while registering its OOM watch", dir)
	}
	return &oomEvents{dir: dir, ino: ino, efd: efd}, nil
}

// close releases the eventfd (the kernel drops the registration with it).
func (e *oomEvents) close() { unix.Close(e.efd) }

// follow calls onOOM for each OOM event of the cgroup until it is gone (and
// settle has passed without another event) or ctx ends, then closes e. The
// reads may come late (a busy machine, a goroutine not yet scheduled): an
// OOM kill and the cgroup's removal read together still count one OOM.
func (e *oomEvents) follow(ctx context.Context, settle time.Duration, onOOM func()) error {
	defer e.close()
	var c oomCount
	return waitEvents(ctx, e.efd, func(n uint64) time.Duration {
		for i := c.read(n, dirInode(e.dir) == e.ino); i > 0; i-- {
			onOOM()
		}
		if c.gone {
			return settle
		}
		return -1
	})
}

// waitEvents reads the (non-blocking) eventfd efd each time it holds a
// count and passes the count to onCount, which says how long to wait for
// the next one (< 0: for ever). It returns when that wait passes with no
// event or when ctx ends.
//
// It waits in Go's network poller, on a duplicate of efd (efd stays the
// caller's): a goroutine parked there holds no thread. It used to block in
// poll(2), one OS thread per running instance on a cgroup v1 host, and
// started a goroutine and a second eventfd for ctx at every wake.
func waitEvents(ctx context.Context, efd int, onCount func(n uint64) time.Duration) error {
	dup, err := unix.FcntlInt(uintptr(efd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("dup eventfd: %w", err)
	}
	f := os.NewFile(uintptr(dup), "eventfd")
	defer f.Close()
	// ctx's end makes the read in progress, or the next one, return.
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 8)
	wait := time.Duration(-1)
	for {
		var deadline time.Time // none: wait for ever
		if wait >= 0 {
			deadline = time.Now().Add(wait)
		}
		if err := f.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("eventfd: %w", err)
		}
		// After the deadline is set: an end of ctx before it would be
		// undone by it, and is seen here instead.
		if ctx.Err() != nil {
			return nil
		}
		n, err := f.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil // ctx ended, or the wait onCount asked for passed
		}
		if err != nil {
			return fmt.Errorf("read eventfd: %w", err)
		}
		if n == len(buf) {
			wait = onCount(binary.NativeEndian.Uint64(buf))
		}
	}
}

// dirInode returns the inode number of dir, 0 when it is gone.
func dirInode(dir string) uint64 {
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return 0
	}
	return st.Ino
}

// StorageUse is what the ext4 file system mounted at where (a
// storage_quota_mb image) holds; 0 when none is mounted there.
func StorageUse(where string) uint64 {
	var st unix.Statfs_t
	if err := unix.Statfs(where, &st); err != nil || st.Type != unix.EXT4_SUPER_MAGIC {
		return 0
	}
	return (st.Blocks - st.Bfree) * uint64(st.Bsize)
}
