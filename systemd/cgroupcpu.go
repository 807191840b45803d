package systemd

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// cgroupCPU reads usage_usec from the cgroup v2 cpu.stat of a unit's
// control group, in nanoseconds. On hybrid hosts (v1 controllers, a v2 tree
// at /sys/fs/cgroup/unified) systemd may not report CPUUsageNSec even with
// CPUAccounting=yes, but the kernel keeps this core statistic in every v2
// cgroup without any controller.
func cgroupCPU(controlGroup string) (uint64, bool) {
	if controlGroup == "" || strings.Contains(controlGroup, "..") {
		return 0, false
	}
	for _, root := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		f, err := os.Open(root + controlGroup + "/cpu.stat")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
				n, err := strconv.ParseUint(v, 10, 64)
				f.Close()
				return n * 1000, err == nil
			}
		}
		f.Close()
	}
	return 0, false
}
