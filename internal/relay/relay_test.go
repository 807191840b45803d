package relay

import (
	"io"
	"net"
	"testing"
)

// Each side's half-close reaches the other, and bytes flow both ways.
func TestBothHalfClose(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// client ↔ (a | relay | b) ↔ echo server
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		c, err := srv.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo until the client half-closes, then close
	}()
	done := make(chan error, 1)
	go func() {
		a, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer a.Close()
		b, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			done <- err
			return
		}
		defer b.Close()
		done <- Both(a, b)
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo through the relay: %q %v", got, err)
	}
	if err := <-done; err != nil {
		t.Errorf("relay ended with %v", err)
	}
}
