package upstream

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether an idle TCP connection has been closed by the
// app (a pending EOF or reset), by one non-blocking peek. Unix connections
// are not checked: a write to a closed one fails with EPIPE before anything
// is sent, and the fast path then takes a new connection.
func peerClosed(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || (err != nil && err != unix.EAGAIN)
		return true
	})
	return closed
}
