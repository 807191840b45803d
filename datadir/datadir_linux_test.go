package datadir

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestPrepareOwnerAndTraverse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown (a unit test: no systemd involved)")
	}
	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(root, "ref")
	if err := os.Mkdir(ref, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ref, 61234, 61235); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "api", "wr_a")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(Options{Dir: dir, OwnerOf: ref, Traverse: data}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "f")} {
		st, _ := os.Stat(p)
		if s := st.Sys().(*syscall.Stat_t); s.Uid != 61234 || s.Gid != 61235 {
			t.Errorf("%s owned by %d:%d", p, s.Uid, s.Gid)
		}
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
