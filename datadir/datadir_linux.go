package datadir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Prepare creates o.Dir (mode 0700) and gives o+x on the way to it.
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
	return nil
}
