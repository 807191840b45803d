// Package bpftest holds what the privileged tests of the BPF packages share:
// a network namespace, a bpf filesystem and a cgroup made for one test,
// helper processes (the test binary re-executed), echo servers and checks of
// where a connection lands. Everything in it needs Linux and root
// (RequireRoot says when a test skips or fails without).
package bpftest
