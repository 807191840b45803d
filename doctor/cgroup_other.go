//go:build !linux

package doctor

// cgroupLayout reports that cgroups are Linux-only.
func cgroupLayout() (string, string) { return "cgroups are Linux-only", "" }
