package netns

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// privateNamespace makes a network namespace of its own (loopback up) on a
// thread that stays in it, listens on 127.0.0.1 there, and returns the
// namespace's path and the listener. The thread ends with the test.
func privateNamespace(t *testing.T) (string, net.Listener) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("TEN_REQUIRE_SYSTEM") != "" {
			t.Fatal("needs root (TEN_REQUIRE_SYSTEM is set)")
		}
		t.Skip("needs root")
	}
	type made struct {
		path string
		l    net.Listener
		err  error
	}
	ch := make(chan made, 1)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- made{err: err}
			return
		}
		ifr, err := unix.NewIfreq("lo")
		if err == nil {
			var fd int
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err == nil {
				ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
				err = unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
				unix.Close(fd)
			}
		}
		if err != nil {
			ch <- made{err: fmt.Errorf("loopback up: %w", err)}
			return
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		ch <- made{fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()), l, err}
		<-stop
	}()
	m := <-ch
	if m.err != nil {
		t.Fatal(m.err)
	}
	t.Cleanup(func() { m.l.Close() })
	go func() {
		for {
			c, err := m.l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "inside\n")
			c.Close()
		}
	}()
	return m.path, m.l
}

// Dial reaches a listener on 127.0.0.1 of another namespace, which the
// host's own 127.0.0.1 does not have, and leaves the caller in its own.
func TestDialInsideNamespace(t *testing.T) {
	path, l := privateNamespace(t)
	addr := l.Addr().String()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s answered in the host's namespace: the listener is not in a namespace of its own", addr)
	}
	before, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		c, err := Dial(context.Background(), path, "tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) != "inside\n" {
			t.Fatalf("dial %d: read %q", i, b)
		}
	}
	runtime.LockOSThread()
	after, _ := os.Readlink("/proc/thread-self/ns/net")
	runtime.UnlockOSThread()
	if before != after {
		t.Errorf("caller's namespace changed: %s → %s", before, after)
	}
	// Other goroutines' dials still go to the host's namespace.
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	for i := 0; i < 20; i++ {
		c, err := net.DialTimeout("tcp", host.Addr().String(), time.Second)
		if err != nil {
			t.Fatalf("host dial %d after namespace dials: %v", i, err)
		}
		c.Close()
	}
}

// A namespace that does not exist, or a refused port inside one, is an error.
func TestDialErrors(t *testing.T) {
	path, l := privateNamespace(t)
	if _, err := Dial(context.Background(), "/proc/999999999/ns/net", "tcp", "127.0.0.1:1"); err == nil {
		t.Error("dial into a missing namespace succeeded")
	}
	port := l.Addr().(*net.TCPAddr).Port
	if _, err := Dial(context.Background(), path, "tcp", fmt.Sprintf("127.0.0.1:%d", port+1)); err == nil {
		t.Error("dial to a port nobody listens on inside succeeded")
	}
}
