// Package ten is the module root; it holds only the go:generate lines that
// rebuild the committed eBPF objects (see bpf/ and router/ebpf).
package ten
