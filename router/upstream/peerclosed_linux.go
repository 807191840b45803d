package upstream

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// PeerClosed reports whether the other end of a connected socket has gone
// (a pending end of stream or error), by one non-blocking peek that takes
// nothing. Data waiting to be read means it is there. The peek does not go
// through Go's poller, so a read deadline that has passed does not hide
// the answer.
func PeerClosed(c syscall.Conn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var b [1]byte
	_ = rc.Control(func(fd uintptr) {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || (err != nil && err != unix.EAGAIN && err != unix.EINTR)
	})
	return closed
}

// peerClosed reports whether an idle TCP connection has been closed by the
// app (PeerClosed). Unix connections are not checked: a write to a closed
// one fails with EPIPE before anything is sent, and the fast path then
// takes a new connection.
func peerClosed(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	return ok && PeerClosed(tc)
}
