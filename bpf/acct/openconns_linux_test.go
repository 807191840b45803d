package acct

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tenhq/ten/bpf/internal/bpftest"
)

// An accepted connection that stays open counts in OpenConnections, silent
// or not, until it closes; a connection the app opens itself does not.
func TestAccountingOpenConnections(t *testing.T) {
	bpftest.NewNetNS(t).Enter(t)
	cg := newCgroup(t, "app")[0]
	a := newAccounting(t, "")
	if err := a.Attach(cg); err != nil {
		t.Fatal(err)
	}
	outside := bpftest.ListenTCP(t, "127.0.0.1:0")
	bpftest.EchoServer(t, outside)
	_, addr := bpftest.StartHelper(t, "echo", cg, []string{"TEN_HELPER_DIAL=" + outside.Addr().String(), "TEN_HELPER_BYTES=10"})
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := bpftest.RoundTrip(c, []byte("x"), make([]byte, 1)); err != nil {
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

// Pinned state of the earlier activity layouts (no open_connections, no
// last_in_ns) is removed, not reused: its links would run new programs on
// old storage.
func TestAccountingMigratesOldPins(t *testing.T) {
	bpftest.RequireRoot(t)
	pins := bpftest.NewBPFFS(t)
	for _, old := range oldAccountingPinDirs {
		if err := os.MkdirAll(filepath.Join(pins, old, "links"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	a := newAccounting(t, pins)
	defer a.Unload()
	for _, old := range []string{"accounting", "accounting-v2"} {
		if _, err := os.Stat(filepath.Join(pins, old)); !os.IsNotExist(err) {
			t.Errorf("old pin directory %s still there: %v", old, err)
		}
	}
	if _, err := os.Stat(filepath.Join(pins, accountingPinDir, "activity")); err != nil {
		t.Errorf("new map not pinned: %v", err)
	}
}
