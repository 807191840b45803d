package front

import (
	"errors"
	"net"
	"testing"
	"time"
)

// The queue hands the fast path's connections to the http.Server, and
// once closed it closes what still arrives and ends Accept.
func TestConnQueue(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}
	q := newConnQueue(addr)
	if q.Addr() != addr {
		t.Errorf("Addr() = %v", q.Addr())
	}
	a, b := net.Pipe()
	defer b.Close()
	go q.put(a)
	c, err := q.Accept()
	if err != nil || c != a {
		t.Fatalf("Accept() = %v, %v; want the connection put", c, err)
	}
	q.Close()
	q.Close() // twice is fine
	if _, err := q.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
	x, y := net.Pipe()
	done := make(chan struct{})
	go func() { q.put(x); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("put blocked on a closed queue")
	}
	y.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := y.Read(make([]byte, 1)); err == nil {
		t.Error("a connection put after Close was not closed")
	}
}
