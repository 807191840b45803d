//go:build !linux

package acct

import (
	"log/slog"

	tenebpf "github.com/tenhq/ten/bpf/ebpf"
)

// Accounting counts the network activity of cgroups; Linux-only.
type Accounting struct{}

// LoadAccounting returns tenebpf.ErrNotSupported: BPF is Linux-only.
func LoadAccounting(pinDir string, log *slog.Logger) (*Accounting, error) {
	return nil, tenebpf.ErrNotSupported
}

// Attach returns tenebpf.ErrNotSupported.
func (a *Accounting) Attach(cgroupPath string) error { return tenebpf.ErrNotSupported }

// Detach returns tenebpf.ErrNotSupported.
func (a *Accounting) Detach(cgroupPath string) error { return tenebpf.ErrNotSupported }

// Prune returns tenebpf.ErrNotSupported.
func (a *Accounting) Prune() error { return tenebpf.ErrNotSupported }

// DetachID returns tenebpf.ErrNotSupported.
func (a *Accounting) DetachID(id uint64) error { return tenebpf.ErrNotSupported }

// Attached returns nothing.
func (a *Accounting) Attached() []uint64 { return nil }

// Stats returns tenebpf.ErrNotSupported.
func (a *Accounting) Stats(cgroupID uint64) (Stats, bool, error) {
	return Stats{}, false, tenebpf.ErrNotSupported
}

// All returns tenebpf.ErrNotSupported.
func (a *Accounting) All() (map[uint64]Stats, error) { return nil, tenebpf.ErrNotSupported }

// Close does nothing.
func (a *Accounting) Close() error { return nil }

// Unload does nothing.
func (a *Accounting) Unload() error { return nil }
