// Package box boots a private systemd as PID 1 of fresh namespaces, so that
// tests and tools can use a real systemd on a host where systemd is not PID 1
// (a CI container, a build VM).
//
// A box is a copy-on-write view of the host: an overlay with the host's root
// file system as the lower layer and a tmpfs as the upper one, its own /proc,
// a read-only /sys, a minimal /dev, fresh tmpfs on /run and /tmp, and only the
// directories listed in Options.RW bound read-write at their host paths. It
// has its own PID, mount, UTS, IPC, cgroup and network namespaces, and its own
// cgroup subtree in every hierarchy, so that systemd inside manages real
// cgroups (MemoryMax is enforced) and Close can remove every trace of it.
//
// A box is a test harness, not a security boundary: everything inside runs as
// root with most capabilities. It avoids touching the host by construction
// (private mount propagation, read-only /proc/sys and /sys, units that would
// change kernel state masked, CAP_SYS_MODULE and CAP_SYS_TIME dropped), so
// that a test cannot change the machine it runs on by accident.
//
// The package re-executes the current binary (/proc/self/exe) for the steps
// that must run inside the new namespaces. Those re-executions are recognised
// and handled by MaybeStage, which the package's init function calls, so any
// binary that imports box — a command or a test binary — can boot boxes.
package box

import (
	"errors"
	"io"
	"log/slog"
	"time"
)

// Options configure Boot.
type Options struct {
	// Name names the box: its host name, and part of its cgroup directory
	// names. Empty means "ten-box".
	Name string
	// RW lists host paths (usually the checkout) bound read-write into the
	// box at the same path. Symbolic links are resolved first.
	RW []string
	// Log receives progress and diagnostics; nil discards them.
	Log *slog.Logger
	// Stdout and Stderr receive systemd's console output; nil discards it.
	// The last part of it is kept either way and included in boot errors.
	Stdout, Stderr io.Writer
	// BootTimeout bounds the boot, from the first namespace to
	// `systemctl is-system-running --wait`. Zero means 60 seconds.
	BootTimeout time.Duration
}

// EnvInside is set to the box's name in the environment of every command run
// by Box.Command, so that a program can tell it runs inside a box.
const EnvInside = "TEN_BOX"

// ErrNotSupported is returned by Boot and Reason on systems other than Linux.
var ErrNotSupported = errors.New("box: booting systemd needs Linux")

// defaultName is the box name used when Options.Name is empty.
const defaultName = "ten-box"
