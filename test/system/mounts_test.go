package system

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMounts: [[service.NAME.mounts]] as tenement's users write them, with a
// source relative to tenement.toml. The default sandbox sees the directory
// at its destination, read-only when asked; a source that does not exist
// makes `ten spawn` fail naming the entry and the path, and a request for a
// new id of that service a 404, with no unit left behind.
func TestMounts(t *testing.T) {
	s := startTen(t, `
[service.m]
command = "TENANT"

[[service.m.mounts]]
source = "./shared"
destination = "/mnt/shared"
readonly = true

[[service.m.mounts]]
source = "./rw"
destination = "/mnt/rw"

[service.miss]
command = "ECHO --mode port"

[[service.miss.mounts]]
source = "./nothere"
destination = "/mnt/x"
`)
	for _, d := range []string{"shared", "rw"} {
		if err := os.Mkdir(filepath.Join(s.dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
		// The instance's dynamic user writes there.
		os.Chmod(filepath.Join(s.dir, d), 0o777)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "shared", "f.txt"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.mustTen("spawn", "m:a")
	if r := s.try("a.m.localhost", "/read?path=/mnt/shared/f.txt"); !r.OK || !strings.Contains(string(r.Result), "from the host") {
		t.Errorf("m:a cannot read the mounted file: %+v", r)
	}
	s.mustFail("a.m.localhost", "/write?path=/mnt/shared/g.txt")
	if r := s.try("a.m.localhost", "/write?path=/mnt/rw/g.txt"); !r.OK {
		t.Errorf("m:a cannot write the read-write mount: %+v", r)
	} else if _, err := os.Stat(filepath.Join(s.dir, "rw", "g.txt")); err != nil {
		t.Errorf("m:a's write to /mnt/rw is not in the host's directory: %v", err)
	}

	out, err := s.ten("spawn", "miss:a")
	if err == nil || !strings.Contains(out, "service.miss.mounts[0].source "+filepath.Join(s.dir, "nothere")+" does not exist") {
		t.Errorf("spawn with a missing mount source: %v\n%s", err, out)
	}
	if code, body, _ := s.get("b.miss.localhost", "/"); code != 404 {
		t.Errorf("request for a new miss id: %d %q, want 404", code, body)
	}
	for _, u := range tenUnits(t) {
		if strings.Contains(u, "tenement-miss") {
			t.Errorf("unit %s left after the refused spawns", u)
		}
	}
}
