// Package ebpf is what ten's BPF packages share with the rest of ten, apart
// from the programs themselves: whether BPF can be used on this host
// (Supported, and the reasons it gives), the cgroup v2 and bpf filesystems
// (CgroupV2Root, CgroupID, EnsureBPFFS: ten pins under /sys/fs/bpf/tenement),
// the lock on the pinned state (LockPins: one ten serve changes it at a
// time), and finding a listening socket held by another process
// (FindListener, FindPortListener: pidfd_getfd, Linux 5.6, needs
// CAP_SYS_PTRACE).
//
// The programs' loaders are beside it: bpf/acct (per-instance activity
// accounting with cgroup programs) and bpf/dispatch (sk_lookup dispatch of
// L4 addresses straight to an instance's socket, and light sleep). Their C
// sources are in bpf/, the folder above; bpf2go generates the objects into
// the loaders' packages (generate.go, make generate), and they are
// committed.
//
// Everything here needs Linux; elsewhere the functions return
// ErrNotSupported.
package ebpf
