package selfunit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A failed install leaves no temporary file behind (before, a failed chmod
// or rename left a copy of the whole binary in the shim dir at each start).
func TestInstallFileLeavesNoTempOnFailure(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A directory with something in it cannot be renamed over.
	dst := filepath.Join(dir, "ten")
	if err := os.MkdirAll(filepath.Join(dst, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := installFile(src, dst); err == nil || !strings.Contains(err.Error(), dst) {
		t.Fatalf("install over a directory: err %v, want one naming %s", err, dst)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".ten-") {
			t.Fatalf("temporary file %s left behind", e.Name())
		}
	}
	// And a good install works, mode 0755.
	ok := filepath.Join(dir, "ok")
	if _, err := installFile(src, ok); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(ok); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed: %v %v", st, err)
	}
}
