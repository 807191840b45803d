package cgroups

import (
	"os"
	"slices"
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
	hs, err := ParseHierarchies(hybridMountinfo, hybridCgroup)
	if err != nil {
		t.Fatal(err)
	}
	want := []Hierarchy{
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
	hs, err = ParseHierarchies("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n", "0::/user.slice/x.scope\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].dir != "/sys/fs/cgroup/user.slice/x.scope" {
		t.Errorf("v2: %+v", hs)
	}

	if _, err := ParseHierarchies("27 1 254:0 / / rw - ext4 /dev/vda rw\n", hybridCgroup); err == nil {
		t.Error("no cgroup mounts: no error")
	}
}

func TestParseCgroupMounts(t *testing.T) {
	got := ParseMounts(hybridMountinfo)
	want := []Mount{
		{Rel: "cpu", FSType: "cgroup", Data: "cpu"},
		{Rel: "cpuacct", FSType: "cgroup", Data: "cpuacct"},
		{Rel: "cpuset", FSType: "cgroup", Data: "cpuset"},
		{Rel: "memory", FSType: "cgroup", Data: "memory"},
		{Rel: "systemd", FSType: "cgroup", Data: "xattr,name=systemd"},
		{Rel: "unified", FSType: "cgroup2"},
		{Rel: "net_cls,net_prio", FSType: "cgroup", Data: "net_cls,net_prio"},
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
	id := BoxID("t", 3)
	if ns, pid, ok := staleOwner(id); !ok || ns != pidNS() || pid != os.Getpid() {
		t.Errorf("BoxID %q parses as %d, %d, %v", id, ns, pid, ok)
	}
	if !Alive(os.Getpid()) || Alive(1<<30) {
		t.Error("alive")
	}
}
