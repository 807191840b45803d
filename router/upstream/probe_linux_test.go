package upstream

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"
)

// probe connects with raw system calls: a listening unix or TCP app gets a
// connection that works both ways; a missing socket or a closed port is an
// error that says so, and nothing is left open.
func TestProbe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.sock")
	if _, err := probe("unix", path, 0); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("no socket: %v", err)
	}
	lu, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer lu.Close()
	lt, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lt.Addr().String()
	for _, tc := range []struct {
		network, addr string
		l             net.Listener
	}{{"unix", path, lu}, {"tcp4", addr, lt}} {
		go func() {
			c, err := tc.l.Accept()
			if err == nil {
				c.Write([]byte("hi"))
				c.Close()
			}
		}()
		c, err := probe(tc.network, tc.addr, 0)
		if err != nil {
			t.Fatalf("%s: %v", tc.network, err)
		}
		b, err := io.ReadAll(c)
		c.Close()
		if string(b) != "hi" || err != nil {
			t.Errorf("%s: read %q %v", tc.network, b, err)
		}
	}
	lt.Close()
	if _, err := probe("tcp4", addr, 0); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed port: %v", err)
	}
}
