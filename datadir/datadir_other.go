//go:build !linux

package datadir

// Prepare is not supported off Linux.
func Prepare(o Options) error { return ErrNotSupported }
