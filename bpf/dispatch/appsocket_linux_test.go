package dispatch

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/tenhq/ten/bpf/internal/bpftest"
)

// An app's own listening socket goes before the systemd-held one, the
// client's address reaching the app; when the app closes it (sleep), the
// held socket takes connections again, and a new app socket (the next
// wake) is first again.
func TestDispatchAppSocket(t *testing.T) {
	ns := bpftest.NewNetNS(t)
	ns.Enter(t)
	d := newDispatcher(t, ns, "")
	t.Cleanup(func() { d.Close() })

	held := bpftest.ListenTCP(t, "127.0.0.1:0")
	mustAdd(t, d, Binding{Label: "db:a", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.0/24"), Port: 7000})

	app := bpftest.ListenTCP(t, "127.0.0.1:0")
	// Nothing to put it before yet.
	if err := d.RegisterAppSocket("db:a", app); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("app socket without a registered socket: %v, want not exist", err)
	}
	mustRegister(t, d, "db:a", held)
	bpftest.LandsOn(t, "127.0.1.5:7000", held)
	if err := d.RegisterAppSocket("db:a", app); err != nil {
		t.Fatal(err)
	}
	if c, err := d.AppSocket("db:a", "tcp4"); err != nil || c == 0 {
		t.Fatalf("AppSocket = %d, %v", c, err)
	}
	bpftest.LandsOn(t, "127.0.1.5:7000", app)
	bpftest.LandsOn(t, "127.0.1.9:7000", app)

	// The app stops: the kernel drops its socket, the held one takes over.
	app.Close()
	bpftest.LandsOn(t, "127.0.1.5:7000", held)

	// A dual-stack IPv6 app socket serves IPv4 destinations too.
	app6 := bpftest.ListenTCP(t, "[::]:0")
	if err := d.RegisterAppSocket("db:a", app6); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", "127.0.1.5:7000", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	app6.SetDeadline(time.Now().Add(time.Second))
	s, err := app6.Accept()
	if err != nil {
		t.Fatalf("not accepted on the dual-stack app socket: %v", err)
	}
	defer s.Close()
	if got, want := netip.MustParseAddrPort(s.RemoteAddr().String()), netip.MustParseAddrPort(c.LocalAddr().String()); got.Addr().Unmap() != want.Addr() || got.Port() != want.Port() {
		t.Errorf("app sees peer %s, client is %s", got, want)
	}

	// Not a listening TCP socket.
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	if err := d.RegisterAppSocket("db:a", udp); err == nil {
		t.Error("a UDP socket was taken as an app socket")
	}

	// Unregistering removes the app socket with the rest.
	if err := d.UnregisterSocket("db:a"); err != nil {
		t.Fatal(err)
	}
	if c, _ := d.AppSocket("db:a", "tcp4"); c != 0 {
		t.Errorf("app socket %d left after UnregisterSocket", c)
	}
}
