package upstream

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// markOf reads c's SO_MARK.
func markOf(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mark int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		mark, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return mark
}

// Every TCP connection of an AppDialer with a mark carries it, by either
// way it dials (net.Dialer, and the raw poll once the app answered), so
// that the accounting does not take ten's own traffic for the instance's.
func TestAppDialerMarksTCP(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("TEN_REQUIRE_SYSTEM") != "" {
			t.Fatal("SO_MARK needs CAP_NET_ADMIN, and TEN_REQUIRE_SYSTEM is set")
		}
		t.Skip("SO_MARK needs CAP_NET_ADMIN: run as root")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	const mark = 0x74656e
	d := NewAppDialer(filepath.Join(t.TempDir(), "wake.sock"), "", port, nil)
	d.SetMark(mark)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "x")
	if err != nil {
		t.Fatal(err)
	}
	if got := markOf(t, c); got != mark {
		t.Errorf("dialed connection's SO_MARK %#x, want %#x", got, mark)
	}
	c.Close()
	c, err = d.try(ctx, true) // the poll's raw dial
	if err != nil {
		t.Fatal(err)
	}
	if got := markOf(t, c); got != mark {
		t.Errorf("polled connection's SO_MARK %#x, want %#x", got, mark)
	}
	c.Close()

	plain := NewAppDialer(filepath.Join(t.TempDir(), "wake.sock"), "", port, nil)
	c, err = plain.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	if got := markOf(t, c); got != 0 {
		t.Errorf("a dialer without a mark set SO_MARK %#x", got)
	}
	c.Close()
}
