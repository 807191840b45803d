package acct

import (
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	tenebpf "github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/bpf/internal/bpftest"
)

func newAccounting(tb testing.TB, pinDir string) *Accounting {
	tb.Helper()
	a, err := LoadAccounting(pinDir, bpftest.Logger(tb))
	if err != nil {
		tb.Fatalf("LoadAccounting: %v", err) // on kernel 6.x a missing feature is a failure
	}
	tb.Cleanup(func() { a.Close() })
	return a
}

func stats(tb testing.TB, a *Accounting, cgroup string) Stats {
	tb.Helper()
	id, err := tenebpf.CgroupID(cgroup)
	if err != nil {
		tb.Fatal(err)
	}
	s, ok, err := a.Stats(id)
	if err != nil || !ok {
		tb.Fatalf("Stats(%s): ok=%v err=%v", cgroup, ok, err)
	}
	return s
}

// waitStats polls until cond holds: counters of loopback traffic are
// updated in softirq context, a moment after the socket calls return.
func waitStats(tb testing.TB, a *Accounting, cgroup string, cond func(Stats) bool) Stats {
	tb.Helper()
	var s Stats
	for range 100 {
		if s = stats(tb, a, cgroup); cond(s) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("stats of %s never got there: %+v", cgroup, s)
	return s
}

func counters(s Stats) Stats {
	s.LastActivity = time.Time{}
	s.LastInbound = time.Time{}
	return s
}

// settle waits until the last connection's closing packets are counted.
func settle(tb testing.TB, a *Accounting, cgroup string) Stats {
	tb.Helper()
	prev := stats(tb, a, cgroup)
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		s := stats(tb, a, cgroup)
		if counters(s) == counters(prev) {
			return s
		}
		prev = s
	}
	tb.Fatalf("counters of %s never settle", cgroup)
	return prev
}

func TestAccounting(t *testing.T) {
	bpftest.NewNetNS(t).Enter(t)
	cg := newCgroup(t, "app")[0]
	a := newAccounting(t, "")
	if err := a.Attach(cg); err != nil {
		t.Fatal(err)
	}
	if err := a.Attach(cg); err != nil {
		t.Fatalf("second Attach: %v", err)
	}
	if s := stats(t, a, cg); s != (Stats{}) {
		t.Fatalf("fresh cgroup has activity: %+v", s)
	}

	// Traffic between sockets outside the cgroup is not its activity.
	outside, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bpftest.EchoServer(t, outside)
	if err := bpftest.Exchange(outside.Addr().String(), 4096); err != nil {
		t.Fatal(err)
	}

	// The helper in the cgroup opens a connection (10 KiB each way), then
	// serves one (64 KiB each way).
	start := time.Now()
	_, addr := bpftest.StartHelper(t, "echo", cg, []string{
		"TEN_HELPER_DIAL=" + outside.Addr().String(),
		"TEN_HELPER_BYTES=10240",
	})
	const n = 64 << 10
	if err := bpftest.Exchange(addr, n); err != nil {
		t.Fatal(err)
	}
	const want = 10240 + n
	s := waitStats(t, a, cg, func(s Stats) bool {
		return s.RxBytes >= want && s.TxBytes >= want && s.Connections >= 2
	})
	t.Logf("after traffic: %+v", s)
	if s.Connections != 2 {
		t.Errorf("Connections = %d, want 2 (one opened, one accepted)", s.Connections)
	}
	if s.RxPackets == 0 || s.TxPackets == 0 {
		t.Errorf("no packets counted: %+v", s)
	}
	if s.RxBytes > 2*want || s.TxBytes > 2*want {
		t.Errorf("more bytes than the helper exchanged (%d each way): %+v", want, s)
	}
	if s.LastActivity.Before(start) || s.LastActivity.After(time.Now()) {
		t.Errorf("LastActivity %v not between %v and now", s.LastActivity, start)
	}

	time.Sleep(20 * time.Millisecond)
	if err := bpftest.Exchange(addr, 100); err != nil {
		t.Fatal(err)
	}
	s2 := waitStats(t, a, cg, func(s2 Stats) bool { return s2.Connections == 3 })
	if !s2.LastActivity.After(s.LastActivity.Add(10 * time.Millisecond)) {
		t.Errorf("LastActivity did not advance: %v then %v", s.LastActivity, s2.LastActivity)
	}

	all, err := a.All()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := tenebpf.CgroupID(cg)
	if len(all) != 1 || all[id].Connections != 3 {
		t.Errorf("All() = %+v, want one cgroup %d with 3 connections", all, id)
	}

	// Detached, the cgroup keeps its counters (the kernel frees them with
	// the cgroup) but they stop moving; attached again, they go on.
	s2 = settle(t, a, cg)
	if err := a.Detach(cg); err != nil {
		t.Fatal(err)
	}
	if err := a.Detach(cg); err != nil {
		t.Errorf("second Detach: %v", err)
	}
	if err := bpftest.Exchange(addr, 100); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	// LastActivity is converted from boot time at each read: allow jitter.
	if s3 := stats(t, a, cg); counters(s3) != counters(s2) || s3.LastActivity.Sub(s2.LastActivity).Abs() > time.Millisecond {
		t.Errorf("detached cgroup still counted: %+v then %+v", s2, s3)
	}
	if err := a.Attach(cg); err != nil {
		t.Fatal(err)
	}
	if err := bpftest.Exchange(addr, 100); err != nil {
		t.Fatal(err)
	}
	waitStats(t, a, cg, func(s Stats) bool { return s.Connections == 4 })
}

func TestAccountingListenerCgroup(t *testing.T) {
	bpftest.NewNetNS(t).Enter(t)
	cgs := newCgroup(t, "instance/socket", "instance/service")
	instance, socket, service := cgs[0][:len(cgs[0])-len("/socket")], cgs[0], cgs[1]
	a := newAccounting(t, "")
	for _, cg := range []string{instance, socket, service} {
		if err := a.Attach(cg); err != nil {
			t.Fatal(err)
		}
	}
	_, addr := bpftest.StartHelper(t, "spawn", socket, []string{"TEN_HELPER_CGROUP=" + service})
	if err := bpftest.Exchange(addr, 1000); err != nil {
		t.Fatal(err)
	}
	for _, cg := range []string{socket, instance} {
		s := waitStats(t, a, cg, func(s Stats) bool { return s.RxBytes >= 1000 && s.TxBytes >= 1000 })
		if s.Connections != 1 {
			t.Errorf("%s: Connections = %d, want 1", cg, s.Connections)
		}
	}
	if s := stats(t, a, service); s != (Stats{}) {
		t.Errorf("service cgroup counted the accepted connection: %+v", s)
	}
}

func TestAccountingPinned(t *testing.T) {
	bpftest.NewNetNS(t).Enter(t)
	pins := bpftest.NewBPFFS(t)
	cg := newCgroup(t, "app")[0]
	a, err := LoadAccounting(pins, bpftest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Attach(cg); err != nil {
		t.Fatal(err)
	}
	_, addr := bpftest.StartHelper(t, "echo", cg, nil)
	if err := bpftest.Exchange(addr, 1000); err != nil {
		t.Fatal(err)
	}
	waitStats(t, a, cg, func(s Stats) bool { return s.Connections == 1 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// Nothing in user space holds the programs now; counting goes on.
	if err := bpftest.Exchange(addr, 1000); err != nil {
		t.Fatal(err)
	}

	b := newAccounting(t, pins)
	if err := b.Attach(cg); err != nil { // adopted: a no-op
		t.Fatal(err)
	}
	s := waitStats(t, b, cg, func(s Stats) bool { return s.Connections == 2 })
	if s.RxBytes < 2000 || s.TxBytes < 2000 {
		t.Errorf("counters lost across reload: %+v", s)
	}
	// After the reload the new programs count.
	if err := bpftest.Exchange(addr, 1000); err != nil {
		t.Fatal(err)
	}
	waitStats(t, b, cg, func(s Stats) bool { return s.Connections == 3 })

	if err := b.Unload(); err != nil {
		t.Fatal(err)
	}
	c := newAccounting(t, pins)
	if ids := c.Attached(); len(ids) != 0 {
		t.Errorf("after Unload, %v still attached", ids)
	}
	id, _ := tenebpf.CgroupID(cg)
	if _, ok, _ := c.Stats(id); ok {
		t.Error("after Unload, the cgroup still has stats")
	}

}

// TestAccountingPrune: systemd removes a stopped service's cgroup; its links
// become defunct and are dropped, by Prune and when a pinned state is loaded.
func TestAccountingPrune(t *testing.T) {
	bpftest.NewNetNS(t).Enter(t)
	pins := bpftest.NewBPFFS(t)
	cgs := newCgroup(t, "a", "b", "c")
	a := newAccounting(t, pins)
	for _, cg := range cgs {
		if err := a.Attach(cg); err != nil {
			t.Fatal(err)
		}
	}
	ids := make([]uint64, len(cgs))
	for i, cg := range cgs {
		ids[i], _ = tenebpf.CgroupID(cg)
	}
	if err := unix.Rmdir(cgs[0]); err != nil {
		t.Fatal(err)
	}
	// The kernel releases a removed cgroup's programs from a work queue.
	for i := 0; i < 200 && len(a.Attached()) == 3; i++ {
		time.Sleep(10 * time.Millisecond)
		if err := a.Prune(); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.Attached(); len(got) != 2 || slices.Contains(got, ids[0]) {
		t.Errorf("after Prune: attached %v, want %v", got, ids[1:])
	}
	a.Close()

	if err := unix.Rmdir(cgs[1]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // see above
	b := newAccounting(t, pins)
	if got := b.Attached(); len(got) != 1 || got[0] != ids[2] {
		t.Errorf("after reload: attached %v, want [%d]", got, ids[2])
	}
	left, _ := filepath.Glob(filepath.Join(pins, accountingPinDir, "links", "*"))
	if len(left) != 1 || filepath.Base(left[0]) != strconv.FormatUint(ids[2], 10) {
		t.Errorf("pinned links left: %v, want only %d", left, ids[2])
	}
}

func TestMain(m *testing.M) { bpftest.Main(m) }

// newCgroup makes a cgroup v2 subtree for the test (bpftest.NewCgroup).
func newCgroup(tb testing.TB, children ...string) []string {
	tb.Helper()
	bpftest.RequireRoot(tb)
	root, err := tenebpf.CgroupV2Root()
	if err != nil {
		tb.Fatal(err)
	}
	return bpftest.NewCgroup(tb, root, children...)
}
