package ebpf

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/tenhq/ten/bpf/internal/bpftest"
)

// FindPortListener finds an app's socket on its PORT, whatever address it
// bound, in the processes given, whatever network namespace it is in.
func TestFindPortListener(t *testing.T) {
	ns := bpftest.NewNetNS(t)
	ns.Enter(t)
	other := bpftest.ListenTCP(t, "127.0.0.1:0")
	defer other.Close()
	ln := bpftest.ListenTCP(t, "[::]:0")
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	f, err := FindPortListener([]int{os.Getpid()}, port)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fl, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	if fl.Addr().String() != ln.Addr().String() {
		t.Errorf("found %s, listening on %s", fl.Addr(), ln.Addr())
	}
	if _, err := FindPortListener([]int{os.Getpid()}, port+1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("port %d: %v, want not exist", port+1, err)
	}
}
