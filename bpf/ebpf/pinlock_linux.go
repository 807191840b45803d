package ebpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PinsHeldError says that another process holds the lock on a pin
// directory (LockPins).
type PinsHeldError struct {
	Dir string
	// PID is the holder's, 0 when it could not be found.
	PID int
}

func (e *PinsHeldError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = "process " + strconv.Itoa(e.PID)
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", e.PID)); err == nil {
			who += " (" + strings.TrimSpace(string(comm)) + ")"
		}
	}
	return fmt.Sprintf("pinned BPF state %s is in use by %s: only one ten serve may change it; stop that one first", e.Dir, who)
}

// PinLock is a held lock on a pin directory.
type PinLock struct{ f *os.File }

// LockPins takes an exclusive flock(2) on the pin directory dir, so that
// two processes never change the same pinned state at once. When another
// process holds it, LockPins fails at once with a *PinsHeldError naming
// that process (from /proc/locks). The lock goes with Unlock or the process.
func LockPins(dir string) (*PinLock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &PinsHeldError{Dir: dir, PID: flockHolder(f)}
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &PinLock{f: f}, nil
}

// Unlock releases the lock.
func (l *PinLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}

// flockHolder finds the pid holding a FLOCK on f's inode in /proc/locks
// (lines like "1: FLOCK  ADVISORY  WRITE 1234 00:1f:5678 0 EOF").
func flockHolder(f *os.File) int {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0
	}
	dev := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	locks, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer locks.Close()
	sc := bufio.NewScanner(locks)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[1] != "FLOCK" || fs[5] != dev {
			continue
		}
		if pid, err := strconv.Atoi(fs[4]); err == nil {
			return pid
		}
	}
	return 0
}
