// Package ten is the module root; it holds only the go:generate lines that
// rebuild the committed eBPF objects from the C sources in bpf/ into the
// packages that load them, bpf/acct, bpf/dispatch and bpf/portguard. Run them
// with `make generate` (mk/bpf.mk pins the compiler); flags that change the objects
// are here so that a plain `go generate ./...` produces the same bytes.
package ten

//go:generate go tool bpf2go -tags linux -output-dir bpf/acct -go-package acct accounting bpf/accounting.c -- -O2 -mcpu=v2 -Ibpf/include -Ibpf
//go:generate go tool bpf2go -tags linux -output-dir bpf/dispatch -go-package dispatch dispatch bpf/dispatch.c -- -O2 -mcpu=v2 -Ibpf/include -Ibpf
//go:generate go tool bpf2go -tags linux -output-dir bpf/portguard -go-package portguard portguard bpf/portguard.c -- -O2 -mcpu=v2 -Ibpf/include -Ibpf
