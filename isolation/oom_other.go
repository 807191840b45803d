//go:build !linux

package isolation

import "context"

// watchCgroup: memory cgroups are Linux's; there is nothing to watch.
func watchCgroup(ctx context.Context, dir string, onEvent func()) error { return nil }

// StorageUse: quota images are mounted on Linux only.
func StorageUse(where string) uint64 { return 0 }
