package selfunit

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// InstallShims copies the running ten binary to {socketDir}/.bin/ten, a
// place every sandboxed instance can execute (a home directory is hidden by
// ProtectHome), so the shim works wherever ten itself was installed; and
// its ten-shim beside it (installShimBin; "" when there is none).
func InstallShims(socketDir string, log *slog.Logger) (ten, tenShim string, err error) {
	ten, err = installShim(socketDir)
	if err != nil {
		return "", "", err
	}
	return ten, installShimBin(ten, log), nil
}

// installShim copies the running ten binary into {socketDir}/.bin.
func installShim(socketDir string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own binary for the shim: %w", err)
	}
	dir := filepath.Join(socketDir, ".bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("shim dir %s: %w", dir, err)
	}
	// The sandboxed instances reach the shim through the socket dir.
	if err := os.Chmod(socketDir, 0o755); err != nil {
		return "", fmt.Errorf("shim dir %s: %w", socketDir, err)
	}
	return installFile(self, filepath.Join(dir, "ten"))
}

// installFile copies src to dst (mode 0755) through a temporary file in
// dst's directory, renamed over dst: running copies of the old one keep
// their (unlinked) inode. On any error the temporary file is removed.
func installFile(src, dst string) (_ string, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("read own binary %s: %w", src, err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".ten-*")
	if err != nil {
		return "", fmt.Errorf("install shim %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, in); err != nil {
		return "", fmt.Errorf("install shim %s: %w", dst, err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return "", fmt.Errorf("install shim %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("install shim %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("install shim %s: %w", dst, err)
	}
	return dst, nil
}

// installShimBin copies the small ten-shim binary of the running ten
// (FindShim: beside it, as make build and ten install put it, or
// in ../libexec/ten, as the Debian package does) beside ten's copy, and returns its
// path; "" (the units then run `ten shim`) when there is none. It starts
// faster than all of ten at every wake of a shim-mode instance.
func installShimBin(tenCopy string, log *slog.Logger) string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	src := FindShim(self)
	if src == "" {
		return ""
	}
	data, err := os.ReadFile(src)
	if err != nil {
		log.Warn("ten-shim not installed; instances run `ten shim`", "err", err)
		return ""
	}
	dst := filepath.Join(filepath.Dir(tenCopy), "ten-shim")
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		log.Warn("ten-shim not installed; instances run `ten shim`", "err", err)
		return ""
	}
	// Rename over the old one: running shims keep their (unlinked) inode.
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		log.Warn("ten-shim not installed; instances run `ten shim`", "err", err)
		return ""
	}
	return dst
}
