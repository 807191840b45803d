//go:build !linux

package ebpf

import (
	"os"
)

// DefaultBPFFS is where the kernel's bpf filesystem is conventionally mounted.
const DefaultBPFFS = "/sys/fs/bpf"

// Supported reports why BPF cannot be used: it is Linux-only.
func Supported() error { return ErrNotSupported }

// CgroupV2Root returns ErrNotSupported: cgroups are Linux-only.
func CgroupV2Root() (string, error) { return "", ErrNotSupported }

// SelfCgroupID returns ErrNotSupported: cgroups are Linux-only.
func SelfCgroupID() (uint64, error) { return 0, ErrNotSupported }

// CgroupID returns ErrNotSupported: cgroups are Linux-only.
func CgroupID(path string) (uint64, error) { return 0, ErrNotSupported }

// EnsureBPFFS returns ErrNotSupported: bpffs is Linux-only.
func EnsureBPFFS(path string) error { return ErrNotSupported }

// FindListener returns ErrNotSupported: pidfd_getfd is Linux-only.
func FindListener(pid int, network, addr string) (*os.File, error) { return nil, ErrNotSupported }

// PinsHeldError says that another process holds the lock on a pin
// directory (Linux only).
type PinsHeldError struct {
	Dir string
	PID int
}

func (e *PinsHeldError) Error() string { return "pinned BPF state " + e.Dir + " is in use" }

// PinLock is a held lock on a pin directory.
type PinLock struct{}

// LockPins fails: there is no pinned BPF state off Linux.
func LockPins(dir string) (*PinLock, error) { return nil, ErrNotSupported }

// Unlock does nothing.
func (l *PinLock) Unlock() error { return nil }

// FindPortListener returns ErrNotSupported: pidfd_getfd is Linux-only.
func FindPortListener(pids []int, port uint16) (*os.File, error) { return nil, ErrNotSupported }
