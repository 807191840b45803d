package datadir

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Prepare creates o.Dir and sets its permissions and owner as o says.
func Prepare(o Options) error {
	if !filepath.IsAbs(o.Dir) {
		return fmt.Errorf("data dir %q is not an absolute path", o.Dir)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if o.Traverse != "" {
		rel, err := filepath.Rel(o.Traverse, o.Dir)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return fmt.Errorf("data dir %s is not under %s", o.Dir, o.Traverse)
		}
		d := o.Traverse
		for _, part := range append([]string{""}, strings.Split(filepath.Dir(rel), "/")...) {
			if part != "" && part != "." {
				d = filepath.Join(d, part)
			}
			st, err := os.Stat(d)
			if err != nil {
				return fmt.Errorf("data dir: %w", err)
			}
			if st.Mode().Perm()&0o001 == 0 {
				if err := os.Chmod(d, st.Mode().Perm()|0o001); err != nil {
					return fmt.Errorf("data dir: %w", err)
				}
			}
		}
	}
	if o.OwnerOf == "" {
		return nil
	}
	ref, err := os.Stat(o.OwnerOf)
	if err != nil {
		return fmt.Errorf("data dir owner: %w", err)
	}
	want := ref.Sys().(*syscall.Stat_t)
	st, err := os.Lstat(o.Dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if got := st.Sys().(*syscall.Stat_t); got.Uid == want.Uid && got.Gid == want.Gid {
		return nil
	}
	// The user's uid changed (or the directory is new): hand over
	// everything, as systemd does for its state directories.
	return filepath.WalkDir(o.Dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, int(want.Uid), int(want.Gid)); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		return nil
	})
}
