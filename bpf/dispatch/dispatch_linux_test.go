package dispatch

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tenhq/ten/bpf/internal/bpftest"
)

func newDispatcher(tb testing.TB, ns *bpftest.NetNS, pinDir string) *Dispatcher {
	tb.Helper()
	d, err := LoadDispatcher(ns.Path(), pinDir, bpftest.Logger(tb))
	if err != nil {
		tb.Fatalf("LoadDispatcher: %v", err) // on kernel 6.x a missing feature is a failure
	}
	return d
}

func mustAdd(tb testing.TB, d *Dispatcher, b Binding) {
	tb.Helper()
	if err := d.AddBinding(b); err != nil {
		tb.Fatal(err)
	}
}

func mustRegister(tb testing.TB, d *Dispatcher, label string, c syscall.Conn) {
	tb.Helper()
	if err := d.RegisterSocket(label, c); err != nil {
		tb.Fatal(err)
	}
}

func TestDispatch(t *testing.T) {
	ns := bpftest.NewNetNS(t)
	ns.Enter(t)
	d := newDispatcher(t, ns, "")
	t.Cleanup(func() { d.Close() })

	api := bpftest.ListenTCP(t, "127.0.0.1:0")
	wide := Binding{Label: "api:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.0/24"), Port: 7000}
	mustAdd(t, d, wide)
	mustAdd(t, d, wide) // idempotent
	mustRegister(t, d, "api:prod", api)
	bpftest.LandsOn(t, "127.0.1.5:7000", api)
	bpftest.LandsOn(t, "127.0.1.200:7000", api)
	bpftest.Refused(t, "127.0.1.5:7001")
	bpftest.Refused(t, "127.0.2.5:7000")

	// A longer prefix wins.
	one := bpftest.ListenTCP(t, "127.0.0.1:0")
	mustAdd(t, d, Binding{Label: "one:x", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.7/32"), Port: 7000})
	mustRegister(t, d, "one:x", one)
	bpftest.LandsOn(t, "127.0.1.7:7000", one)
	bpftest.LandsOn(t, "127.0.1.8:7000", api)

	// A port range, and an exact port of another label in it.
	db := bpftest.ListenTCP(t, "127.0.0.1:0")
	mustAdd(t, d, Binding{Label: "db:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.3.0/24"), Port: 8000, PortEnd: 8099})
	mustRegister(t, d, "db:prod", db)
	bpftest.LandsOn(t, "127.0.3.1:8000", db)
	bpftest.LandsOn(t, "127.0.3.99:8099", db)
	bpftest.Refused(t, "127.0.3.1:8100")

	// The same key for another label is refused and changes nothing.
	if err := d.AddBinding(Binding{Label: "thief", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.3.0/24"), Port: 8050, PortEnd: 8200}); err == nil {
		t.Error("overlapping binding of another label accepted")
	}
	bpftest.Refused(t, "127.0.3.1:8150")

	// Every port: an exact port of a shorter prefix still wins over it.
	all := bpftest.ListenTCP(t, "127.0.0.1:0")
	mustAdd(t, d, Binding{Label: "all:x", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.0/24")})
	mustRegister(t, d, "all:x", all)
	bpftest.LandsOn(t, "127.0.1.5:1234", all)
	bpftest.LandsOn(t, "127.0.1.5:7000", api)

	// IPv6.
	v6 := bpftest.ListenTCP(t, "[::1]:0")
	mustAdd(t, d, Binding{Label: "api:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("::1/128"), Port: 7000})
	mustRegister(t, d, "api:prod", v6)
	bpftest.LandsOn(t, "[::1]:7000", v6)

	// A binding whose socket is missing refuses connections.
	mustAdd(t, d, Binding{Label: "asleep", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.4.1/32"), Port: 7000})
	bpftest.Refused(t, "127.0.4.1:7000")

	got, err := d.Bindings()
	if err != nil {
		t.Fatal(err)
	}
	want := []Binding{
		{Label: "all:x", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.0/24")},
		{Label: "api:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.0/24"), Port: 7000},
		{Label: "api:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("::1/128"), Port: 7000},
		{Label: "asleep", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.4.1/32"), Port: 7000},
		{Label: "db:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.3.0/24"), Port: 8000, PortEnd: 8099},
		{Label: "one:x", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.7/32"), Port: 7000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Bindings() =\n%v\nwant\n%v", got, want)
	}

	dests, err := d.Destinations()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Destination{}
	for _, dst := range dests {
		byName[dst.Label+" "+dst.Network] = dst
	}
	if dst := byName["api:prod tcp4"]; dst.Lookups != 4 || dst.Socket == 0 {
		t.Errorf("api:prod tcp4 = %+v, want 4 lookups and a socket", dst)
	}
	if dst := byName["asleep tcp4"]; dst.Misses != 1 || dst.Socket != 0 {
		t.Errorf("asleep tcp4 = %+v, want 1 miss and no socket", dst)
	}
	if _, ok := byName["thief tcp4"]; ok {
		t.Error("refused binding left a destination")
	}

	// Removing the binding hands the address back to the ordinary lookup.
	if err := d.RemoveBinding(wide); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveBinding(wide); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second RemoveBinding: %v, want not exist", err)
	}
	bpftest.LandsOn(t, "127.0.1.5:7000", all)
	if err := d.UnregisterSocket("all:x"); err != nil {
		t.Fatal(err)
	}
	bpftest.Refused(t, "127.0.1.5:7000")
	mustRegister(t, d, "all:x", all)
	bpftest.LandsOn(t, "127.0.1.5:7000", all)

	// A socket closed by its owner leaves the dispatcher by itself.
	one.Close()
	bpftest.Refused(t, "127.0.1.7:7000")

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	bpftest.Refused(t, "127.0.3.1:8000") // unpinned: Close detached the program
}

func TestDispatchUDP(t *testing.T) {
	ns := bpftest.NewNetNS(t)
	ns.Enter(t)
	d := newDispatcher(t, ns, "")
	t.Cleanup(func() { d.Close() })
	srv, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	mustAdd(t, d, Binding{Label: "dns", Protocol: "udp", Prefix: netip.MustParsePrefix("127.0.1.0/24"), Port: 5353})
	mustRegister(t, d, "dns", srv)
	c, err := net.Dial("udp", "127.0.1.5:5353")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	srv.SetDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 16)
	n, from, err := srv.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "hello" || from.String() != c.LocalAddr().String() {
		t.Errorf("got %q from %s, want hello from %s", buf[:n], from, c.LocalAddr())
	}
}

func TestDispatchRejects(t *testing.T) {
	ns := bpftest.NewNetNS(t)
	ns.Enter(t)
	d := newDispatcher(t, ns, "")
	t.Cleanup(func() { d.Close() })

	ln := bpftest.ListenTCP(t, "127.0.0.1:0")
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := d.RegisterSocket("x", c.(*net.TCPConn)); err == nil {
		t.Error("registered a connected TCP socket")
	}
	if err := d.RegisterSocket("", ln); err == nil {
		t.Error("registered a socket without a label")
	}
	mptcp, err := net.Listen("tcp", "127.0.0.1:0") // MPTCP by default since Go 1.24
	if err != nil {
		t.Fatal(err)
	}
	defer mptcp.Close()
	if err := d.RegisterSocket("x", mptcp.(*net.TCPListener)); err == nil || !strings.Contains(err.Error(), "MPTCP") {
		t.Errorf("RegisterSocket(MPTCP listener) = %v, want an MPTCP error", err)
	}
	if _, err := LoadDispatcher("/proc/self/status", "", nil); err == nil {
		t.Error("loaded a dispatcher for a file that is not a namespace")
	}
}

func TestDispatchPinned(t *testing.T) {
	ns := bpftest.NewNetNS(t)
	ns.Enter(t)
	pins := bpftest.NewBPFFS(t)

	ln := bpftest.ListenTCP(t, "127.0.0.1:0")
	b := Binding{Label: "api:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.0/24"), Port: 7000}
	d := newDispatcher(t, ns, pins)
	mustAdd(t, d, b)
	mustRegister(t, d, "api:prod", ln)
	bpftest.LandsOn(t, "127.0.1.5:7000", ln)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// Nothing in user space holds the dispatcher now.
	bpftest.LandsOn(t, "127.0.1.6:7000", ln)

	d = newDispatcher(t, ns, pins)
	got, err := d.Bindings()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []Binding{b}) {
		t.Errorf("reopened Bindings() = %v, want [%v]", got, b)
	}
	dests, err := d.Destinations()
	if err != nil {
		t.Fatal(err)
	}
	if len(dests) != 1 || dests[0].Socket == 0 || dests[0].Lookups != 2 {
		t.Errorf("reopened Destinations() = %+v, want api:prod with a socket and 2 lookups", dests)
	}
	bpftest.LandsOn(t, "127.0.1.7:7000", ln)

	// A second dispatcher for the same namespace sees the same state.
	d2 := newDispatcher(t, ns, pins)
	mustAdd(t, d2, Binding{Label: "api:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.9.0/24"), Port: 7000})
	d2.Close()
	bpftest.LandsOn(t, "127.0.9.9:7000", ln)

	if err := d.Unload(); err != nil {
		t.Fatal(err)
	}
	bpftest.Refused(t, "127.0.1.5:7000")
	if left, _ := filepath.Glob(filepath.Join(pins, "dispatch-*")); len(left) != 0 {
		t.Errorf("pins left after Unload: %v", left)
	}
	// A fresh load after Unload starts empty.
	d = newDispatcher(t, ns, pins)
	defer d.Close()
	if got, _ := d.Bindings(); len(got) != 0 {
		t.Errorf("bindings after Unload: %v", got)
	}
}

func TestMain(m *testing.M) { bpftest.Main(m) }
