package kernel

import (
	"path/filepath"

	"github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/netns"
	"github.com/tenhq/ten/units"
)

// Netns is the network namespace of inst's service (network = "none": a
// namespace of its own, where its app's 127.0.0.1:PORT is) as a
// /proc/PID/ns/net path of a process in the service, or "" while the
// service runs no process. Every process of a unit shares its namespace
// (systemd's PrivateNetwork); one the tenant moved into a namespace of its
// own would only lead the router's connection into the tenant's own.
func (w *Wiring) Netns(inst units.Instance) string {
	w.mu.Lock()
	root := w.cgroups
	w.mu.Unlock()
	if root == "" {
		r, err := ebpf.CgroupV2Root()
		if err != nil {
			return ""
		}
		root = r
	}
	pids := readPids(filepath.Join(root, inst.SliceCgroup(), inst.ServiceUnit(), "cgroup.procs"))
	if len(pids) == 0 {
		return ""
	}
	return netns.Of(pids[0])
}
