//go:build !linux

package ebpf

import (
	"context"
	"log/slog"
	"os"
	"syscall"
)

// DefaultBPFFS is where the kernel's bpf filesystem is conventionally mounted.
const DefaultBPFFS = "/sys/fs/bpf"

// Supported reports why BPF cannot be used: it is Linux-only.
func Supported() error { return ErrNotSupported }

// CgroupV2Root returns ErrNotSupported: cgroups are Linux-only.
func CgroupV2Root() (string, error) { return "", ErrNotSupported }

// CgroupID returns ErrNotSupported: cgroups are Linux-only.
func CgroupID(path string) (uint64, error) { return 0, ErrNotSupported }

// EnsureBPFFS returns ErrNotSupported: bpffs is Linux-only.
func EnsureBPFFS(path string) error { return ErrNotSupported }

// FindListener returns ErrNotSupported: pidfd_getfd is Linux-only.
func FindListener(pid int, network, addr string) (*os.File, error) { return nil, ErrNotSupported }

// Accounting counts the network activity of cgroups; Linux-only.
type Accounting struct{}

// LoadAccounting returns ErrNotSupported: BPF is Linux-only.
func LoadAccounting(pinDir string, log *slog.Logger) (*Accounting, error) {
	return nil, ErrNotSupported
}

// Attach returns ErrNotSupported.
func (a *Accounting) Attach(cgroupPath string) error { return ErrNotSupported }

// Detach returns ErrNotSupported.
func (a *Accounting) Detach(cgroupPath string) error { return ErrNotSupported }

// Prune returns ErrNotSupported.
func (a *Accounting) Prune() error { return ErrNotSupported }

// DetachID returns ErrNotSupported.
func (a *Accounting) DetachID(id uint64) error { return ErrNotSupported }

// Attached returns nothing.
func (a *Accounting) Attached() []uint64 { return nil }

// Stats returns ErrNotSupported.
func (a *Accounting) Stats(cgroupID uint64) (Stats, bool, error) {
	return Stats{}, false, ErrNotSupported
}

// All returns ErrNotSupported.
func (a *Accounting) All() (map[uint64]Stats, error) { return nil, ErrNotSupported }

// Close does nothing.
func (a *Accounting) Close() error { return nil }

// Unload does nothing.
func (a *Accounting) Unload() error { return nil }

// Dispatcher steers L4 connections with sk_lookup; Linux-only.
type Dispatcher struct{}

// LoadDispatcher returns ErrNotSupported: BPF is Linux-only.
func LoadDispatcher(netnsPath, pinDir string, log *slog.Logger) (*Dispatcher, error) {
	return nil, ErrNotSupported
}

// AddBinding returns ErrNotSupported.
func (d *Dispatcher) AddBinding(b Binding) error { return ErrNotSupported }

// RemoveBinding returns ErrNotSupported.
func (d *Dispatcher) RemoveBinding(b Binding) error { return ErrNotSupported }

// Bindings returns ErrNotSupported.
func (d *Dispatcher) Bindings() ([]Binding, error) { return nil, ErrNotSupported }

// RegisterAppSocket returns ErrNotSupported.
func (d *Dispatcher) RegisterAppSocket(label string, conn syscall.Conn) error { return ErrNotSupported }

// AppSocket returns ErrNotSupported.
func (d *Dispatcher) AppSocket(label, network string) (uint64, error) { return 0, ErrNotSupported }

// RegisterSocket returns ErrNotSupported.
func (d *Dispatcher) RegisterSocket(label string, conn syscall.Conn) error { return ErrNotSupported }

// UnregisterSocket returns ErrNotSupported.
func (d *Dispatcher) UnregisterSocket(label string) error { return ErrNotSupported }

// Destinations returns ErrNotSupported.
func (d *Dispatcher) Destinations() ([]Destination, error) { return nil, ErrNotSupported }

// Close does nothing.
func (d *Dispatcher) Close() error { return nil }

// Unload does nothing.
func (d *Dispatcher) Unload() error { return nil }

// SetFrozen returns ErrNotSupported.
func (d *Dispatcher) SetFrozen(label string, frozen bool) error { return ErrNotSupported }

// FrozenState is what the dispatcher holds about a frozen label.
type FrozenState struct{ Connections uint64 }

// Frozen returns ErrNotSupported.
func (d *Dispatcher) Frozen() (map[string]FrozenState, error) { return nil, ErrNotSupported }

// Wakes returns ErrNotSupported.
func (d *Dispatcher) Wakes(ctx context.Context, fn func(label string)) error {
	return ErrNotSupported
}

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
