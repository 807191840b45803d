package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenhq/ten/bpf/ebpf"
)

// A connection to a listener of this process reports this process's own
// cgroup, on the kernel the tests run on.
func TestCheckPeerCgroups(t *testing.T) {
	self, err := ebpf.SelfCgroupID()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPeerCgroups(self); err != nil {
		t.Fatal(err)
	}
	if err := CheckPeerCgroups(self + 1); err == nil {
		t.Error("another cgroup's id passed the check")
	}
}

// PeerCgroup of something that is not a loopback TCP/IPv4 connection is
// an error, not an id.
func TestPeerCgroupNotTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := PeerCgroup(a); err == nil {
		t.Error("a pipe has a peer cgroup")
	}
}

// With an owner check, a connection to PORT is taken only when the check
// accepts the cgroup of the socket that answered; otherwise the dialer
// keeps waiting and its error says why, and nothing reaches the squatter's
// connection but a close.
func TestAppDialerOwner(t *testing.T) {
	dir := t.TempDir()
	wakePath := filepath.Join(dir, "wake.sock")
	wake, err := net.Listen("unix", wakePath)
	if err != nil {
		t.Fatal(err)
	}
	defer wake.Close()
	go func() {
		for {
			c, err := wake.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	app, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	go func() {
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("app"))
			c.Close()
		}
	}()
	port := app.Addr().(*net.TCPAddr).Port
	self, err := ebpf.SelfCgroupID()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPeerCgroups(self); err != nil {
		t.Fatal(err)
	}

	accept := NewAppDialer(wakePath, "", port, nil)
	accept.SetOwner(func(id uint64) error {
		if id != self {
			return errors.New("not the app")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := accept.DialContext(ctx, "tcp", "x")
	if err != nil {
		t.Fatalf("the app's own cgroup refused: %v", err)
	}
	c.Close()

	refuse := NewAppDialer(wakePath, "", port, nil)
	refuse.SetOwner(func(id uint64) error { return fmt.Errorf("cgroup %d is not the instance's", id) })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if c, err := refuse.DialContext(ctx2, "tcp", "x"); err == nil {
		c.Close()
		t.Fatal("a listener of another cgroup was taken for the app")
	} else if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), fmt.Sprintf("cgroup %d is not the instance's", self)) {
		t.Fatalf("error %v: want the deadline, saying why the answer was refused", err)
	}
	if err := refuse.WaitListening(ctx2, false); err == nil {
		t.Fatal("the readiness watch took a listener of another cgroup")
	}
}
