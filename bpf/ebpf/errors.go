package ebpf

import "errors"

// ErrNotSupported is returned by every constructor on systems other than
// Linux; on Linux, Supported wraps the more specific reasons below.
var ErrNotSupported = errors.New("ebpf: not supported on this system")

// Reasons Supported gives for BPF being unavailable; test with errors.Is.
var (
	// ErrNoPrivilege: the process has neither CAP_SYS_ADMIN nor CAP_BPF with
	// CAP_NET_ADMIN.
	ErrNoPrivilege = errors.New("missing CAP_BPF+CAP_NET_ADMIN or CAP_SYS_ADMIN")
	// ErrKernelTooOld: a program or map type ten needs is missing.
	ErrKernelTooOld = errors.New("kernel lacks a BPF feature (need Linux 5.9 or newer)")
	// ErrNoBPFFS: the kernel has no bpf filesystem to pin objects in.
	ErrNoBPFFS = errors.New("no bpf filesystem")
	// ErrNoCgroup2: no cgroup v2 hierarchy is mounted.
	ErrNoCgroup2 = errors.New("no cgroup v2 hierarchy")
)
