//go:build !linux

package upstream

// rawSyscalls: off Linux RawIO reads and writes the connection itself.
const rawSyscalls = false
