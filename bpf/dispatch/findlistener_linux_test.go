package dispatch

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"

	tenebpf "github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/bpf/internal/bpftest"
)

// TestFindListener copies the listening socket of another process, as ten
// does with systemd's, and dispatches to it with sk_lookup.
func TestFindListener(t *testing.T) {
	ns := bpftest.NewNetNS(t)
	ns.Enter(t)
	holder, addr := bpftest.StartHelper(t, "hold", "", nil)

	f, err := tenebpf.FindListener(holder.Process.Pid, "tcp", addr)
	if err != nil {
		t.Fatalf("FindListener: %v", err) // pidfd_getfd is in every kernel ten supports
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The helper accepts nothing: a connection to its address is ours to take.
	bpftest.LandsOn(t, addr, ln.(*net.TCPListener))

	d := newDispatcher(t, ns, "")
	defer d.Close()
	mustAdd(t, d, Binding{Label: "held", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.0/24"), Port: 7000})
	mustRegister(t, d, "held", f)
	f.Close()
	bpftest.LandsOn(t, "127.0.1.1:7000", ln.(*net.TCPListener))

	if _, err := tenebpf.FindListener(holder.Process.Pid, "tcp", "127.0.0.1:1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tenebpf.FindListener(unbound address) = %v, want not exist", err)
	}
	if _, err := tenebpf.FindListener(holder.Process.Pid, "sctp", addr); err == nil {
		t.Error("tenebpf.FindListener(sctp) succeeded")
	}
}
