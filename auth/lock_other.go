//go:build !unix

package auth

import "os"

// lockFile is a no-op where flock does not exist: ten serve runs on Linux
// only, so no second writer can share a store there.
func lockFile(string) (func(), error) { return func() {}, nil }

func inode(os.FileInfo) int64 { return 0 }
