package isolation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// watchCgroup registers an eventfd on dir's memory.oom_control and calls
// onEvent for each OOM event, until the cgroup goes away or ctx ends. A
// cgroup without memory.oom_control (cgroup v2, no memory controller) is no
// error: there is nothing to watch.
func watchCgroup(ctx context.Context, dir string, onEvent func()) error {
	ctl, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return nil
	}
	defer ctl.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	defer unix.Close(efd)
	reg := fmt.Sprintf("%d %d", efd, ctl.Fd())
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0); err != nil {
		return fmt.Errorf("register on %s: %w", dir, err)
	}
	ino := dirInode(dir)
	return waitEvents(ctx, efd, func() bool {
		// The eventfd also fires when the cgroup is removed, and by then a
		// new cgroup of the restarted service may sit at the same path:
		// count only events of the cgroup this watch registered on.
		if ino == 0 || dirInode(dir) != ino {
			return false
		}
		onEvent()
		return true
	})
}

// waitEvents calls onEvent for each event on the (non-blocking) eventfd
// efd until onEvent returns false or ctx ends: it polls efd together with a
// second eventfd that ctx's end writes to, so no read blocks past ctx.
func waitEvents(ctx context.Context, efd int, onEvent func() bool) error {
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	defer unix.Close(stop)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			var one [8]byte
			one[0] = 1
			_, _ = unix.Write(stop, one[:])
		case <-done:
		}
	}()
	buf := make([]byte, 8)
	for {
		fds := []unix.PollFd{{Fd: int32(efd), Events: unix.POLLIN}, {Fd: int32(stop), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("poll: %w", err)
		}
		if fds[1].Revents != 0 || ctx.Err() != nil {
			return nil
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		if _, err := unix.Read(efd, buf); err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("read eventfd: %w", err)
		}
		if !onEvent() {
			return nil
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
