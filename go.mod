module github.com/tenhq/ten

go 1.26.8

tool github.com/cilium/ebpf/cmd/bpf2go

require (
	github.com/alecthomas/kong v1.17.0
	github.com/cilium/ebpf v0.22.0
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/godbus/dbus/v5 v5.2.4
	github.com/pelletier/go-toml/v2 v2.4.3
	golang.org/x/sys v0.50.0
)

require golang.org/x/net v0.59.0 // indirect
