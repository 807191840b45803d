package kernel

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/netns"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// cgroupRoot is the cgroup v2 mount, found once, for a Wiring without BPF
// (which found it while loading).
var cgroupRoot = sync.OnceValues(ebpf.CgroupV2Root)

// Netns is the network namespace of inst's service (network = "none": a
// namespace of its own, where its app's 127.0.0.1:PORT is) as a
// /proc/PID/ns/net path of a process in the service, or "" while the
// service runs no process. Every process of a unit shares its namespace
// (systemd's PrivateNetwork); one the tenant moved into a namespace of its
// own would only lead the router's connection into the tenant's own.
func (w *Wiring) Netns(inst units.Instance) string {
	root := w.cgroups
	if root == "" {
		r, err := cgroupRoot()
		if err != nil {
			return ""
		}
		root = r
	}
	pid := firstPid(filepath.Join(systemd.ServiceDir(root, inst), "cgroup.procs"))
	if pid == 0 {
		return ""
	}
	return netns.Of(pid)
}

// firstPid is the first process of a cgroup.procs file; 0 when none.
func firstPid(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if sc.Scan() {
		if pid, err := strconv.Atoi(sc.Text()); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}
