//go:build !linux

package isolation

import (
	"context"
	"time"
)

// oomEvents: memory cgroups are Linux's; there is nothing to watch.
type oomEvents struct{ ino uint64 }

// registerOOM: memory cgroups are Linux's; there is nothing to watch.
func registerOOM(dir string) (*oomEvents, error) { return nil, nil }

func (e *oomEvents) close() {}

func (e *oomEvents) follow(ctx context.Context, settle time.Duration, onOOM func()) error {
	return nil
}

// dirInode: no cgroups to tell apart off Linux.
func dirInode(dir string) uint64 { return 0 }

// StorageUse: quota images are mounted on Linux only.
func StorageUse(where string) uint64 { return 0 }
