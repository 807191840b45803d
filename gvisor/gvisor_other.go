//go:build !linux

package gvisor

import "errors"

var errNotSupported = errors.New("sandbox: gVisor needs Linux")

// Exec is not supported off Linux.
func Exec(o Options) error { return errNotSupported }

// ListenExec is not supported off Linux.
func ListenExec(path string, argv []string) error { return errNotSupported }
