package systemtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// TestSystemd runs where Main put it: next to a systemd that is PID 1,
// booted privately when the host has none.
func TestSystemd(t *testing.T) {
	Require(t)
	out, err := exec.Command("systemctl", "is-system-running").Output()
	if got := strings.TrimSpace(string(out)); got != "running" {
		t.Errorf("is-system-running = %q (%v)", got, err)
	}
	// The checkout is there, writable, at its host path.
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(root, ".systemtest-*")
	if err != nil {
		t.Fatalf("module root not writable: %v", err)
	}
	f.Close()
	os.Remove(f.Name())
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		p, dir string
		want   bool
	}{
		{"/a/b", "/a", true},
		{"/a", "/a", true},
		{"/ab", "/a", false},
		{"/", "/a", false},
		{"/a/../b", "/a", false},
	} {
		if got := within(filepath.Clean(c.p), c.dir); got != c.want {
			t.Errorf("within(%q, %q) = %v", c.p, c.dir, got)
		}
	}
}
