package upstream

import (
	"net"
	"testing"
	"time"
)

// An idle TCP connection the app closed is seen as closed before reuse;
// an open one is not; also past the connection's read deadline.
func TestPeerClosed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	// A read deadline that has passed (a pooled connection keeps its last
	// request's) does not hide the answer.
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if peerClosed(c) {
		t.Fatal("an open connection reported closed")
	}
	sc.Close()
	deadline := time.Now().Add(2 * time.Second)
	for !peerClosed(c) {
		if time.Now().After(deadline) {
			t.Fatal("a connection the peer closed is not reported closed")
		}
		time.Sleep(time.Millisecond)
	}
}
