//go:build !linux

package portguard

import (
	"log/slog"

	tenebpf "github.com/tenhq/ten/bpf/ebpf"
)

// Guard keeps ports for the cgroups that own them; Linux-only.
type Guard struct{}

// Load returns tenebpf.ErrNotSupported: BPF is Linux-only.
func Load(pinDir string, log *slog.Logger) (*Guard, error) { return nil, tenebpf.ErrNotSupported }

// Attach returns tenebpf.ErrNotSupported.
func (g *Guard) Attach(cgroupPath string) error { return tenebpf.ErrNotSupported }

// Attached returns 0.
func (g *Guard) Attached() uint64 { return 0 }

// Set returns tenebpf.ErrNotSupported.
func (g *Guard) Set(port int, owner uint64) error { return tenebpf.ErrNotSupported }

// Delete returns tenebpf.ErrNotSupported.
func (g *Guard) Delete(port int) error { return tenebpf.ErrNotSupported }

// Owners returns tenebpf.ErrNotSupported.
func (g *Guard) Owners() (map[int]uint64, error) { return nil, tenebpf.ErrNotSupported }

// Denied returns tenebpf.ErrNotSupported.
func (g *Guard) Denied() (uint64, error) { return 0, tenebpf.ErrNotSupported }

// Close does nothing.
func (g *Guard) Close() error { return nil }

// Unload does nothing.
func (g *Guard) Unload() error { return nil }
