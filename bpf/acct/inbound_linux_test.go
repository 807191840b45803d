package acct

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/tenhq/ten/bpf/internal/bpftest"
)

// Connections the instance opens itself (a database, an API it polls) are
// activity (LastActivity) but not inbound activity (LastInbound): a service
// with idle_activity = "inbound" sleeps while its app polls the outside.
// Its clients' connections are both.
func TestAccountingInboundIgnoresAppOpened(t *testing.T) {
	bpftest.NewNetNS(t).Enter(t)
	cg := newCgroup(t, "app")[0]
	a := newAccounting(t, "")
	if err := a.Attach(cg); err != nil {
		t.Fatal(err)
	}
	// An outside server the app talks to, as to its database.
	ln := bpftest.ListenTCP(t, "127.0.0.1:0")
	bpftest.EchoServer(t, ln)

	// The app connects out and exchanges 64 KiB before it listens.
	_, addr := bpftest.StartHelper(t, "echo", cg, []string{"TEN_HELPER_DIAL=" + ln.Addr().String(), "TEN_HELPER_BYTES=" + strconv.Itoa(64<<10)})
	out := settle(t, a, cg)
	if out.LastActivity.IsZero() || out.TxBytes < 64<<10 || out.Connections != 1 {
		t.Fatalf("the app's own connection is not counted: %+v", out)
	}
	if !out.LastInbound.IsZero() {
		t.Fatalf("the app's own connection moved LastInbound: %+v", out)
	}

	// A client of the app: both move.
	time.Sleep(30 * time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := bpftest.RoundTrip(c, []byte("x"), make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	in := settle(t, a, cg)
	if !in.LastInbound.After(out.LastActivity.Add(20*time.Millisecond)) || !in.LastActivity.After(out.LastActivity.Add(20*time.Millisecond)) {
		t.Fatalf("a client's exchange did not move both: before %+v, after %+v", out, in)
	}

	// The app's own traffic again: LastActivity moves, LastInbound stays.
	time.Sleep(30 * time.Millisecond)
	_, _ = bpftest.StartHelper(t, "echo", cg, []string{"TEN_HELPER_DIAL=" + ln.Addr().String(), "TEN_HELPER_BYTES=1000"})
	again := settle(t, a, cg)
	if !again.LastActivity.After(in.LastActivity.Add(20 * time.Millisecond)) {
		t.Errorf("the app's second connection did not move LastActivity: %v, then %v", in.LastActivity, again.LastActivity)
	}
	if again.LastInbound.Sub(in.LastInbound).Abs() > 5*time.Millisecond {
		t.Errorf("the app's second connection moved LastInbound: %v, then %v", in.LastInbound, again.LastInbound)
	}
}

// The flags of sockets are pinned with the counters: a connection the app
// opened before a restart of ten is still its own afterwards (its SYN, where
// it was flagged, is not seen again).
func TestAccountingAppOpenedSurvivesReload(t *testing.T) {
	bpftest.NewNetNS(t).Enter(t)
	pins := bpftest.NewBPFFS(t)
	cg := newCgroup(t, "app")[0]
	a := newAccounting(t, pins)
	if err := a.Attach(cg); err != nil {
		t.Fatal(err)
	}
	// The app connects to a server outside its cgroup and echoes on that
	// connection what the server sends.
	ln := bpftest.ListenTCP(t, "127.0.0.1:0")
	bpftest.StartHelper(t, "dialecho", cg, []string{"TEN_HELPER_DIAL=" + ln.Addr().String()})
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := bpftest.RoundTrip(srv, []byte("ping"), make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	s := settle(t, a, cg)
	if s.LastActivity.IsZero() || !s.LastInbound.IsZero() {
		t.Fatalf("the app's own connection: %+v, want LastActivity only", s)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	b := newAccounting(t, pins)
	defer b.Unload()
	for range 3 {
		if err := bpftest.RoundTrip(srv, []byte("ping"), make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
	}
	s2 := settle(t, b, cg)
	if s2.TxPackets <= s.TxPackets || !s2.LastActivity.After(s.LastActivity) {
		t.Fatalf("the exchange after the reload was not counted: before %+v, after %+v", s, s2)
	}
	if !s2.LastInbound.IsZero() {
		t.Errorf("after the reload the app's own connection moved LastInbound: %+v", s2)
	}
}
