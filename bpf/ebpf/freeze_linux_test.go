package ebpf

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// An accepted connection that stays open counts in OpenConnections, silent
// or not, until it closes; a connection the app opens itself does not.
func TestAccountingOpenConnections(t *testing.T) {
	newNetNS(t).enter(t)
	cg := newCgroup(t, "app")[0]
	a := newAccounting(t, "")
	if err := a.Attach(cg); err != nil {
		t.Fatal(err)
	}
	outside := listenTCP(t, "127.0.0.1:0")
	echoServer(t, outside)
	_, addr := startHelper(t, "echo", cg, []string{"TEN_HELPER_DIAL=" + outside.Addr().String(), "TEN_HELPER_BYTES=10"})
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := roundTrip(c, []byte("x"), make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	s := waitStats(t, a, cg, func(s Stats) bool { return s.OpenConnections == 3 })
	time.Sleep(50 * time.Millisecond)
	if s2 := stats(t, a, cg); s2.OpenConnections != 3 {
		t.Fatalf("silent open connections: %d, before %+v", s2.OpenConnections, s)
	}
	conns[0].Close()
	waitStats(t, a, cg, func(s Stats) bool { return s.OpenConnections == 2 })
	conns[1].Close()
	conns[2].Close()
	s = waitStats(t, a, cg, func(s Stats) bool { return s.OpenConnections == 0 })
	if s.Connections != 4 {
		t.Errorf("Connections %d, want 4 (1 opened, 3 accepted)", s.Connections)
	}
}

// A connection for a frozen destination is still assigned to its socket,
// waits there, and makes the program send one wake event with the label.
func TestDispatchFrozenWakeEvent(t *testing.T) {
	ns := newNetNS(t)
	ns.enter(t)
	d := newDispatcher(t, ns, newBPFFS(t))
	t.Cleanup(func() { d.Unload() })
	ln := listenTCP(t, "127.0.0.1:0")
	mustAdd(t, d, Binding{Label: "db:a", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.5/32"), Port: 5432})
	mustRegister(t, d, "db:a", ln)
	if err := d.SetFrozen("db:a", true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wakes := make(chan string, 16)
	go d.Wakes(ctx, func(label string) { wakes <- label })

	start := time.Now()
	c, err := net.DialTimeout("tcp", "127.0.1.5:5432", time.Second)
	if err != nil {
		t.Fatalf("dial a frozen destination: %v", err)
	}
	defer c.Close()
	select {
	case l := <-wakes:
		t.Logf("wake event after %s", time.Since(start))
		if l != "db:a" {
			t.Errorf("wake event for %q", l)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no wake event")
	}
	// The connection waited in the backlog of the registered socket, with
	// the client's address.
	ln.SetDeadline(time.Now().Add(time.Second))
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if sc.RemoteAddr().String() != c.LocalAddr().String() {
		t.Errorf("peer %s, client %s", sc.RemoteAddr(), c.LocalAddr())
	}
	fz, err := d.Frozen()
	if err != nil || fz["db:a"].Connections != 1 {
		t.Errorf("Frozen() = %v, %v", fz, err)
	}
	// Thawed: no more events.
	if err := d.SetFrozen("db:a", false); err != nil {
		t.Fatal(err)
	}
	c2, err := net.DialTimeout("tcp", "127.0.1.5:5432", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	select {
	case l := <-wakes:
		t.Errorf("wake event for a thawed destination %q", l)
	case <-time.After(100 * time.Millisecond):
	}
	if fz, _ := d.Frozen(); len(fz) != 0 {
		t.Errorf("Frozen() after thaw: %v", fz)
	}
}

// Pinned state of the earlier activity layout (no open_connections) is
// removed, not reused: its links would run new programs on old storage.
func TestAccountingMigratesOldPins(t *testing.T) {
	requireRoot(t)
	pins := newBPFFS(t)
	if err := os.MkdirAll(filepath.Join(pins, "accounting", "links"), 0o700); err != nil {
		t.Fatal(err)
	}
	a := newAccounting(t, pins)
	defer a.Unload()
	if _, err := os.Stat(filepath.Join(pins, "accounting")); !os.IsNotExist(err) {
		t.Errorf("old pin directory still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(pins, accountingPinDir, "activity")); err != nil {
		t.Errorf("new map not pinned: %v", err)
	}
}
