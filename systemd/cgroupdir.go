package systemd

import (
	"os"
	"path/filepath"

	"github.com/tenhq/ten/units"
)

// SliceDir returns the cgroup directory of the instance's slice under root
// (a cgroup mount): units.Instance.SliceCgroup, or the LegacySliceCgroup of
// an instance made before instance slices went into buckets when only that
// one exists.
func SliceDir(root string, inst units.Instance) string {
	dir := filepath.Join(root, inst.SliceCgroup())
	if _, err := os.Stat(dir); err != nil {
		if legacy := filepath.Join(root, inst.LegacySliceCgroup()); exists(legacy) {
			return legacy
		}
	}
	return dir
}

// ServiceDir returns the cgroup directory of the instance's service under
// root: in SliceDir.
func ServiceDir(root string, inst units.Instance) string {
	return filepath.Join(SliceDir(root, inst), inst.ServiceUnit())
}

// legacySliceLoaded reports whether the instance's LegacySlice has a cgroup
// in any hierarchy systemd manages (unified, hybrid or legacy mounts).
func legacySliceLoaded(inst units.Instance) bool {
	return hasCgroup(inst.LegacySliceCgroup())
}

// sliceLoaded reports the same of the instance's Slice.
func sliceLoaded(inst units.Instance) bool {
	return hasCgroup(inst.SliceCgroup())
}

func hasCgroup(rel string) bool {
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"} {
		if exists(filepath.Join(root, rel)) {
			return true
		}
	}
	return false
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
