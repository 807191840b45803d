package selfunit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeExe(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestInstallBinariesCopiesShim(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeExe(t, filepath.Join(src, "ten"), "ten v2")
	writeExe(t, filepath.Join(src, ShimName), "shim v2")
	// An older shim in place is replaced, not appended to.
	writeExe(t, filepath.Join(dst, ShimName), "shim v1, longer than the new one")
	var out bytes.Buffer
	if err := InstallBinaries(filepath.Join(src, "ten"), filepath.Join(dst, "ten"), &out); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"ten": "ten v2", ShimName: "shim v2"} {
		p := filepath.Join(dst, name)
		b, err := os.ReadFile(p)
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s mode: %v %v", p, st.Mode(), err)
		}
	}
	if !strings.Contains(out.String(), "installed "+filepath.Join(dst, ShimName)) {
		t.Errorf("output does not name the shim:\n%s", out.String())
	}
}

func TestInstallBinariesFromPackageLayout(t *testing.T) {
	root, dst := t.TempDir(), t.TempDir()
	self := filepath.Join(root, "usr", "bin", "ten")
	writeExe(t, self, "ten")
	writeExe(t, filepath.Join(root, "usr", "libexec", "ten", ShimName), "packaged shim")
	if got, want := FindShim(self), filepath.Join(root, "usr", "libexec", "ten", ShimName); got != want {
		t.Fatalf("FindShim = %q, want %q", got, want)
	}
	if err := InstallBinaries(self, filepath.Join(dst, "ten"), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, ShimName)); err != nil || string(b) != "packaged shim" {
		t.Errorf("shim beside the installed ten: %q, %v", b, err)
	}
}

func TestInstallBinariesWithoutShim(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeExe(t, filepath.Join(src, "ten"), "ten")
	// Not executable: not a shim.
	if err := os.WriteFile(filepath.Join(src, ShimName), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := InstallBinaries(filepath.Join(src, "ten"), filepath.Join(dst, "ten"), &out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, ShimName)); !os.IsNotExist(err) {
		t.Errorf("a shim was installed from nothing: %v", err)
	}
	if !strings.Contains(out.String(), "ten shim") {
		t.Errorf("no word that instances run `ten shim`:\n%s", out.String())
	}
}
