package fastpath

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// clientHere reports whether the client is still connected: one
// non-blocking peek finds no end of stream or error on its connection.
// A connection it cannot look into counts as there.
func (cc *clientConn) clientHere() bool {
	c := cc.c
	if cn, ok := c.(*countedConn); ok {
		c = cn.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	here := true
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		here = n > 0 || err == unix.EAGAIN || err == unix.EINTR
		return true
	})
	return here
}
