package portguard

import (
	"net"
	"strconv"
	"strings"
	"testing"

	tenebpf "github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/bpf/internal/bpftest"
)

func TestMain(m *testing.M) { bpftest.Main(m) }

func load(tb testing.TB, pinDir string) *Guard {
	tb.Helper()
	g, err := Load(pinDir, bpftest.Logger(tb))
	if err != nil {
		tb.Fatalf("Load: %v", err) // on kernel 6.x a missing feature is a failure
	}
	tb.Cleanup(func() { g.Close() })
	return g
}

// freePort returns a TCP port nothing holds in the current network
// namespace.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// binds has a helper process in cgroup try to bind each address and
// returns "ok" or the errno name for each.
func binds(tb testing.TB, cgroup string, addrs ...string) []string {
	tb.Helper()
	_, line := bpftest.StartHelper(tb, "bind", cgroup, []string{"TEN_HELPER_BIND=" + strings.Join(addrs, " ")})
	got := strings.Fields(line)
	if len(got) != len(addrs) {
		tb.Fatalf("helper answered %q for %d addresses", line, len(addrs))
	}
	return got
}

func cgroupID(tb testing.TB, path string) uint64 {
	tb.Helper()
	id, err := tenebpf.CgroupID(path)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// TestGuard: below the attached cgroup, only the owner's processes (its
// cgroup and the cgroups under it) bind a guarded port, on any address;
// other processes there get EPERM, processes outside the attached cgroup
// and other network namespaces are not affected, and a freed port is
// anyone's again.
func TestGuard(t *testing.T) {
	bpftest.NewNetNS(t).Enter(t)
	root, err := tenebpf.CgroupV2Root()
	if err != nil {
		t.Fatal(err)
	}
	cgs := bpftest.NewCgroup(t, root, "a", "a/svc", "b")
	top := cgs[0][:strings.LastIndex(cgs[0], "/")]
	a, aSvc, b := cgs[0], cgs[1], cgs[2]
	g := load(t, "")
	if err := g.Attach(top); err != nil {
		t.Fatal(err)
	}
	if got := g.Attached(); got != cgroupID(t, top) {
		t.Fatalf("Attached() = %d, want %d", got, cgroupID(t, top))
	}
	port, other := freePort(t), freePort(t)
	p := strconv.Itoa(port)
	if err := g.Set(port, cgroupID(t, a)); err != nil {
		t.Fatal(err)
	}

	got := binds(t, b, "127.0.0.1:"+p, "0.0.0.0:"+p, "[::]:"+p, "[::1]:"+p, "127.0.0.1:"+strconv.Itoa(other))
	want := []string{"EPERM", "EPERM", "EPERM", "EPERM", "ok"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("another cgroup binding the guarded port %d (127.0.0.1, 0.0.0.0, ::, ::1) and a free one: %v, want %v", port, got, want)
	}
	if got := binds(t, aSvc, "127.0.0.1:"+p, "0.0.0.0:"+p); strings.Join(got, " ") != "ok ok" {
		t.Errorf("the owner's own service binding its port: %v, want ok ok", got)
	}
	if got := binds(t, "", "127.0.0.1:"+p); got[0] != "ok" {
		t.Errorf("a process outside the attached cgroup: %v, want ok", got)
	}
	if n, err := g.Denied(); err != nil || n != 4 {
		t.Errorf("Denied() = %d, %v; want 4", n, err)
	}
	owners, err := g.Owners()
	if err != nil || len(owners) != 1 || owners[port] != cgroupID(t, a) {
		t.Errorf("Owners() = %v, %v", owners, err)
	}

	if err := g.Delete(port); err != nil {
		t.Fatal(err)
	}
	if got := binds(t, b, "127.0.0.1:"+p); got[0] != "ok" {
		t.Errorf("after Delete: %v, want ok", got)
	}
	if err := g.Delete(port); err != nil {
		t.Errorf("Delete of a free port: %v", err)
	}

	// Another network namespace: its ports are its own.
	if err := g.Set(port, cgroupID(t, a)); err != nil {
		t.Fatal(err)
	}
	bpftest.NewNetNS(t).Enter(t)
	if got := binds(t, b, "127.0.0.1:"+p); got[0] != "ok" {
		t.Errorf("in another network namespace: %v, want ok", got)
	}
}

// TestGuardBadEntry: entries that cannot be right are refused.
func TestGuardBadEntry(t *testing.T) {
	bpftest.NewNetNS(t).Enter(t)
	g := load(t, "")
	for _, c := range []struct {
		port  int
		owner uint64
	}{{0, 1}, {70000, 1}, {-1, 1}, {8080, 0}} {
		if err := g.Set(c.port, c.owner); err == nil {
			t.Errorf("Set(%d, %d) accepted", c.port, c.owner)
		}
	}
}

// TestGuardPinned: with a pin directory the guard holds after Close (ten
// down), a new Guard finds the owners and the attachment, and a cgroup
// made again gets the programs moved to it.
func TestGuardPinned(t *testing.T) {
	bpftest.NewNetNS(t).Enter(t)
	pins := bpftest.NewBPFFS(t)
	root, err := tenebpf.CgroupV2Root()
	if err != nil {
		t.Fatal(err)
	}
	cgs := bpftest.NewCgroup(t, root, "a", "b")
	top := cgs[0][:strings.LastIndex(cgs[0], "/")]
	a, b := cgs[0], cgs[1]
	port := freePort(t)
	p := strconv.Itoa(port)

	g, err := Load(pins, bpftest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Attach(top); err != nil {
		t.Fatal(err)
	}
	if err := g.Set(port, cgroupID(t, a)); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if got := binds(t, b, "127.0.0.1:"+p); got[0] != "EPERM" {
		t.Errorf("with no Guard open (pinned): %v, want EPERM", got)
	}

	g2 := load(t, pins)
	if got := g2.Attached(); got != cgroupID(t, top) {
		t.Errorf("adopted Attached() = %d, want %d", got, cgroupID(t, top))
	}
	if owners, err := g2.Owners(); err != nil || owners[port] != cgroupID(t, a) {
		t.Errorf("adopted Owners() = %v, %v", owners, err)
	}
	if err := g2.Attach(top); err != nil {
		t.Fatal(err)
	}
	if got := binds(t, b, "127.0.0.1:"+p); got[0] != "EPERM" {
		t.Errorf("after adoption: %v, want EPERM", got)
	}
	if err := g2.Unload(); err != nil {
		t.Fatal(err)
	}
	if got := binds(t, b, "127.0.0.1:"+p); got[0] != "ok" {
		t.Errorf("after Unload: %v, want ok", got)
	}
}
