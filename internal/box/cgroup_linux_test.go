package box

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A hybrid host as on ten's build machines: v1 controllers mounted apart,
// name=systemd, cgroup2 at unified; this process in a nested memory cgroup.
const (
	hybridMountinfo = `27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
42 31 0:39 / /sys/fs/cgroup/net_cls,net_prio rw,relatime shared:9 - cgroup cgroup rw,net_cls,net_prio
`
	hybridCgroup = `9:name=systemd:/
4:memory:/process_api/229ff8
3:cpuset:/
2:cpuacct:/
1:cpu:/
7:net_cls,net_prio:/
0::/
`
)

func TestParseHierarchies(t *testing.T) {
	hs, err := parseHierarchies(hybridMountinfo, hybridCgroup)
	if err != nil {
		t.Fatal(err)
	}
	want := []hierarchy{
		{mount: "/sys/fs/cgroup/cpu", dir: "/sys/fs/cgroup/cpu"},
		{mount: "/sys/fs/cgroup/cpuacct", dir: "/sys/fs/cgroup/cpuacct"},
		{mount: "/sys/fs/cgroup/cpuset", dir: "/sys/fs/cgroup/cpuset", cpuset: true},
		{mount: "/sys/fs/cgroup/memory", dir: "/sys/fs/cgroup/memory/process_api/229ff8"},
		{mount: "/sys/fs/cgroup/systemd", dir: "/sys/fs/cgroup/systemd"},
		{mount: "/sys/fs/cgroup/unified", dir: "/sys/fs/cgroup/unified"},
		{mount: "/sys/fs/cgroup/net_cls,net_prio", dir: "/sys/fs/cgroup/net_cls,net_prio"},
	}
	if !slices.Equal(hs, want) {
		t.Errorf("got  %+v\nwant %+v", hs, want)
	}

	// Pure cgroup v2, the process in a nested cgroup.
	hs, err = parseHierarchies("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n", "0::/user.slice/x.scope\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].dir != "/sys/fs/cgroup/user.slice/x.scope" {
		t.Errorf("v2: %+v", hs)
	}

	if _, err := parseHierarchies("27 1 254:0 / / rw - ext4 /dev/vda rw\n", hybridCgroup); err == nil {
		t.Error("no cgroup mounts: no error")
	}
}

func TestParseCgroupMounts(t *testing.T) {
	got := parseCgroupMounts(hybridMountinfo)
	want := []cgroupMount{
		{rel: "cpu", fstype: "cgroup", data: "cpu"},
		{rel: "cpuacct", fstype: "cgroup", data: "cpuacct"},
		{rel: "cpuset", fstype: "cgroup", data: "cpuset"},
		{rel: "memory", fstype: "cgroup", data: "memory"},
		{rel: "systemd", fstype: "cgroup", data: "xattr,name=systemd"},
		{rel: "unified", fstype: "cgroup2"},
		{rel: "net_cls,net_prio", fstype: "cgroup", data: "net_cls,net_prio"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/mnt/a\040b`); got != "/mnt/a b" {
		t.Errorf("got %q", got)
	}
}

func TestStaleOwner(t *testing.T) {
	for name, want := range map[string][2]int{
		"ten-box.ten-test.4026531836.1234.1": {4026531836, 1234},
		"ten-box.x.7.77.12":                  {7, 77},
		"ten-box.x.7.0.1":                    {},
		"ten-box.x.1234.1":                   {},
		"ten-box.a.b.7.77.12":                {},
		"system.slice":                       {},
		"ten-box-exec":                       {},
	} {
		ns, pid, ok := staleOwner(name)
		if int(ns) != want[0] || pid != want[1] || ok != (want[1] != 0) {
			t.Errorf("staleOwner(%q) = %d, %d, %v; want %v", name, ns, pid, ok, want)
		}
	}
	id := boxID("t", 3)
	if ns, pid, ok := staleOwner(id); !ok || ns != pidNS() || pid != os.Getpid() {
		t.Errorf("boxID %q parses as %d, %d, %v", id, ns, pid, ok)
	}
	if !alive(os.Getpid()) || alive(1<<30) {
		t.Error("alive")
	}
}

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
