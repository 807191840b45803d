package box

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestMasks(t *testing.T) {
	etc := t.TempDir()
	for _, p := range []string{
		"systemd/system/multi-user.target.wants/postgresql.service",
		"systemd/system/multi-user.target.wants/nginx.service",
		"systemd/system/sockets.target.wants/dbus.socket",
		"systemd/system/sysinit.target.requires/systemd-journald.service",
		"systemd/system/getty.target.wants/getty@tty1.service",
	} {
		if err := os.MkdirAll(filepath.Join(etc, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/lib/systemd/system/x", filepath.Join(etc, p)); err != nil {
			t.Fatal(err)
		}
	}
	m := masks(etc)
	for _, u := range []string{"nginx.service", "postgresql.service", "getty@tty1.service", "timers.target", "systemd-modules-load.service"} {
		if !slices.Contains(m, u) {
			t.Errorf("%s not masked", u)
		}
	}
	for _, u := range m {
		if strings.HasPrefix(u, "dbus") || strings.HasPrefix(u, "systemd-journald") {
			t.Errorf("%s masked", u)
		}
	}
	if !slices.IsSorted(m) {
		t.Error("masks not sorted")
	}
}

func TestTail(t *testing.T) {
	tl := &tail{max: 8}
	tl.Write([]byte("0123456789"))
	tl.Write([]byte("ab"))
	if got := tl.String(); got != "456789ab" {
		t.Errorf("tail = %q", got)
	}
}

func TestResolveRW(t *testing.T) {
	d := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(d, link); err != nil {
		t.Fatal(err)
	}
	got, err := resolveRW([]string{link})
	if err != nil || len(got) != 1 || got[0] != d {
		t.Errorf("resolveRW(link) = %v, %v; want [%s]", got, err, d)
	}
	if _, err := resolveRW([]string{"/"}); err == nil {
		t.Error("/ accepted")
	}
	if _, err := resolveRW([]string{filepath.Join(d, "missing")}); err == nil {
		t.Error("missing path accepted")
	}
}
