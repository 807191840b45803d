package upstream

import (
	"net"
	"testing"
	"time"
)

// The pool drops connections unused for longer than IdleTimeout.
func TestPoolDropsStaleConnections(t *testing.T) {
	var p Pool
	mk := func(age time.Duration) *Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		uc := NewConn(a)
		p.Put(uc)
		uc.idleSince = time.Now().Add(-age)
		return uc
	}
	mk(time.Hour)
	fresh := mk(0)
	if got := p.Get(); got != fresh {
		t.Fatalf("get: %p, want the fresh one %p", got, fresh)
	}
	if got := p.Get(); got != nil {
		t.Fatal("a stale connection was handed out")
	}
	mk(time.Hour)
	mk(0) // put drops the stale one in front
	p.mu.Lock()
	n := len(p.idle)
	p.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d idle after put, want 1", n)
	}
}
