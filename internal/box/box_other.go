//go:build !linux

package box

import (
	"context"
	"net"
	"os/exec"
)

// Box is a running private systemd; on this system Boot cannot make one.
type Box struct{}

// Boot returns ErrNotSupported: boxes need Linux.
func Boot(ctx context.Context, opts Options) (*Box, error) { return nil, ErrNotSupported }

// PID returns 0.
func (b *Box) PID() int { return 0 }

// Name returns "".
func (b *Box) Name() string { return "" }

// Command returns a command that fails with ErrNotSupported when run.
func (b *Box) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Err = ErrNotSupported
	return cmd
}

// Dial returns ErrNotSupported.
func (b *Box) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, ErrNotSupported
}

// Listen returns ErrNotSupported.
func (b *Box) Listen(network, address string) (net.Listener, error) { return nil, ErrNotSupported }

// Close does nothing.
func (b *Box) Close() error { return nil }

// Console returns "".
func (b *Box) Console() string { return "" }

// SystemdIsPID1 returns false: systemd runs only on Linux.
func SystemdIsPID1() bool { return false }

// Reason returns ErrNotSupported.
func Reason() error { return ErrNotSupported }

// MaybeStage does nothing: there are no stages outside Linux.
func MaybeStage() {}
