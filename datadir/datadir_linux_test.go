package datadir

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPrepareTraverse(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "api", "wr_a")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(Options{Dir: dir, Traverse: data}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("%s mode %v", dir, st.Mode().Perm())
	}
	for _, p := range []string{data, filepath.Join(data, "api")} {
		if st, _ := os.Stat(p); st.Mode().Perm()&0o001 == 0 || st.Mode().Perm()&0o004 != 0 {
			t.Errorf("%s mode %v: want o+x, not o+r", p, st.Mode().Perm())
		}
	}
	if err := Prepare(Options{Dir: "rel/x"}); err == nil {
		t.Error("relative dir accepted")
	}
}
