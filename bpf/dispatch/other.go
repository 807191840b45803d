//go:build !linux

package dispatch

import (
	"context"
	"log/slog"
	"syscall"

	tenebpf "github.com/tenhq/ten/bpf/ebpf"
)

// Dispatcher steers L4 connections with sk_lookup; Linux-only.
type Dispatcher struct{}

// LoadDispatcher returns tenebpf.ErrNotSupported: BPF is Linux-only.
func LoadDispatcher(netnsPath, pinDir string, log *slog.Logger) (*Dispatcher, error) {
	return nil, tenebpf.ErrNotSupported
}

// AddBinding returns tenebpf.ErrNotSupported.
func (d *Dispatcher) AddBinding(b Binding) error { return tenebpf.ErrNotSupported }

// RemoveBinding returns tenebpf.ErrNotSupported.
func (d *Dispatcher) RemoveBinding(b Binding) error { return tenebpf.ErrNotSupported }

// Bindings returns tenebpf.ErrNotSupported.
func (d *Dispatcher) Bindings() ([]Binding, error) { return nil, tenebpf.ErrNotSupported }

// RegisterAppSocket returns tenebpf.ErrNotSupported.
func (d *Dispatcher) RegisterAppSocket(label string, conn syscall.Conn) error {
	return tenebpf.ErrNotSupported
}

// AppSocket returns tenebpf.ErrNotSupported.
func (d *Dispatcher) AppSocket(label, network string) (uint64, error) {
	return 0, tenebpf.ErrNotSupported
}

// RegisterSocket returns tenebpf.ErrNotSupported.
func (d *Dispatcher) RegisterSocket(label string, conn syscall.Conn) error {
	return tenebpf.ErrNotSupported
}

// UnregisterSocket returns tenebpf.ErrNotSupported.
func (d *Dispatcher) UnregisterSocket(label string) error { return tenebpf.ErrNotSupported }

// Destinations returns tenebpf.ErrNotSupported.
func (d *Dispatcher) Destinations() ([]Destination, error) { return nil, tenebpf.ErrNotSupported }

// Close does nothing.
func (d *Dispatcher) Close() error { return nil }

// Unload does nothing.
func (d *Dispatcher) Unload() error { return nil }

// SetFrozen returns tenebpf.ErrNotSupported.
func (d *Dispatcher) SetFrozen(label string, frozen bool) error { return tenebpf.ErrNotSupported }

// FrozenState is what the dispatcher holds about a frozen label.
type FrozenState struct{ Connections uint64 }

// Frozen returns tenebpf.ErrNotSupported.
func (d *Dispatcher) Frozen() (map[string]FrozenState, error) { return nil, tenebpf.ErrNotSupported }

// Wakes returns tenebpf.ErrNotSupported.
func (d *Dispatcher) Wakes(ctx context.Context, fn func(label string)) error {
	return tenebpf.ErrNotSupported
}
