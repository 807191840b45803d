package selfunit

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ShimName is the file name of ten's small activation shim binary.
const ShimName = "ten-shim"

// PackageShim is where the Debian package ships ten-shim: a helper that
// systemd units run, not a command for users, so not on PATH.
const PackageShim = "/usr/libexec/ten/" + ShimName

// FindShim returns the ten-shim that belongs to the ten binary at self:
// beside it (make build, ten install) or in ../libexec/ten (the Debian
// package: /usr/bin/ten, /usr/libexec/ten/ten-shim); "" when there is none.
// Without it instances run `ten shim`, which starts slower at every wake.
func FindShim(self string) string {
	dir := filepath.Dir(self)
	for _, p := range []string{
		filepath.Join(dir, ShimName),
		filepath.Join(dir, "..", "libexec", "ten", ShimName),
	} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return filepath.Clean(p)
		}
	}
	return ""
}

// InstallBinaries copies ten from self to binary and, when self has a
// ten-shim (FindShim), that to ten-shim beside binary; it writes a line per
// copied file to out. A file already in place (self == binary) is left.
func InstallBinaries(self, binary string, out io.Writer) error {
	if self != binary {
		if err := copyFile(self, binary, 0o755); err != nil {
			return fmt.Errorf("install binary %s: %w", binary, err)
		}
		fmt.Fprintf(out, "installed %s\n", binary)
	}
	src := FindShim(self)
	dst := filepath.Join(filepath.Dir(binary), ShimName)
	if src == "" {
		fmt.Fprintf(out, "no %s beside %s: instances will run `ten shim` (slower to wake)\n", ShimName, self)
		return nil
	}
	if src == dst {
		return nil
	}
	if err := copyFile(src, dst, 0o755); err != nil {
		return fmt.Errorf("install shim %s: %w", dst, err)
	}
	fmt.Fprintf(out, "installed %s\n", dst)
	return nil
}
