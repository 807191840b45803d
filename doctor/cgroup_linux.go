package doctor

import "golang.org/x/sys/unix"

// cgroupLayout names the host's cgroup layout and returns the v2 mount, if any.
func cgroupLayout() (string, string) {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "unified cgroup v2 at /sys/fs/cgroup", "/sys/fs/cgroup"
	}
	if unix.Statfs("/sys/fs/cgroup/unified", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "hybrid: v1 controllers, v2 tree at /sys/fs/cgroup/unified (memory limits via v1; BPF and freezing via v2)", "/sys/fs/cgroup/unified"
	}
	return "legacy cgroup v1 only: BPF accounting and freezing are unavailable", ""
}
