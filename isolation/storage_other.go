//go:build !linux

package isolation

import "io/fs"

// diskBytes falls back to the apparent size where st_blocks is not known.
func diskBytes(info fs.FileInfo) int64 { return info.Size() }

// mountRoot cannot tell here; ten's mounts are Linux-only.
func mountRoot(path string) bool { return false }
