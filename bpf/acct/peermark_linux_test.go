package acct

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tenhq/ten/bpf/internal/bpftest"
)

// dialMarked connects to addr with SO_MARK = mark (0: none), as ten's
// router and health probes connect to a PORT app.
func dialMarked(t *testing.T, addr string, mark int) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			if mark != 0 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark)
			}
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Traffic from ten's own sockets (PeerMark) is counted in bytes and packets
// but is not activity: a health probe every second must not keep an idle
// instance awake. The same exchange from any other socket is activity, at
// its first packet and at its last.
func TestAccountingPeerMarkIsNotActivity(t *testing.T) {
	bpftest.NewNetNS(t).Enter(t)
	cg := newCgroup(t, "app")[0]
	a := newAccounting(t, "")
	if err := a.Attach(cg); err != nil {
		t.Fatal(err)
	}
	_, addr := bpftest.StartHelper(t, "echo", cg, nil)

	// A client of the app: activity.
	c := dialMarked(t, addr, 0)
	if err := bpftest.RoundTrip(c, []byte("x"), make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	base := settle(t, a, cg)
	if base.LastActivity.IsZero() {
		t.Fatalf("an unmarked exchange left no activity: %+v", base)
	}

	// ten's probes, one connection each, and one kept-alive connection
	// with several requests: counted, but LastActivity stays.
	time.Sleep(30 * time.Millisecond)
	for range 3 {
		c := dialMarked(t, addr, PeerMark)
		if err := bpftest.RoundTrip(c, []byte("probe"), make([]byte, 5)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	kept := dialMarked(t, addr, PeerMark)
	for range 3 {
		if err := bpftest.RoundTrip(kept, []byte("req"), make([]byte, 3)); err != nil {
			t.Fatal(err)
		}
	}
	kept.Close()
	s := settle(t, a, cg)
	if s.Connections != base.Connections+4 || s.RxPackets <= base.RxPackets || s.TxPackets <= base.TxPackets {
		t.Errorf("ten's connections not counted: before %+v, after %+v", base, s)
	}
	// LastActivity is converted from boot time at each read: allow jitter
	// (the marked traffic came 30 ms and more after the last unmarked).
	if s.LastActivity.Sub(base.LastActivity).Abs() > 5*time.Millisecond {
		t.Errorf("ten's own traffic moved LastActivity: %v, then %v", base.LastActivity, s.LastActivity)
	}
	if s.LastInbound.Sub(base.LastInbound).Abs() > 5*time.Millisecond {
		t.Errorf("ten's own traffic moved LastInbound: %v, then %v", base.LastInbound, s.LastInbound)
	}
	if s.OpenConnections != 0 {
		t.Errorf("OpenConnections %d after every connection closed", s.OpenConnections)
	}

	// A mark ten does not use is anyone's traffic.
	time.Sleep(30 * time.Millisecond)
	c = dialMarked(t, addr, PeerMark+1)
	if err := bpftest.RoundTrip(c, []byte("x"), make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s2 := settle(t, a, cg)
	if !s2.LastActivity.After(s.LastActivity.Add(20 * time.Millisecond)) {
		t.Errorf("a client with another mark is not activity: %v, then %v", s.LastActivity, s2.LastActivity)
	}
}
