package dispatch

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tenhq/ten/bpf/internal/bpftest"
)

// A connection for a frozen destination is still assigned to its socket,
// waits there, and makes the program send one wake event with the label.
func TestDispatchFrozenWakeEvent(t *testing.T) {
	ns := bpftest.NewNetNS(t)
	ns.Enter(t)
	d := newDispatcher(t, ns, bpftest.NewBPFFS(t))
	t.Cleanup(func() { d.Unload() })
	ln := bpftest.ListenTCP(t, "127.0.0.1:0")
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
