package upstream

import (
	"errors"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// probeWaitMs bounds how long probe waits for a loopback TCP handshake it
// started: on loopback it completes at once, or the app is not there.
const probeWaitMs = 50

// probe dials addr (a unix socket path, or 127.0.0.1:port) with raw
// system calls: while the app does not listen a try is a socket, a connect
// and a close, where net.Dialer also parses the address, makes a netFD and
// registers it with the poller. A poll of a waking app tries every few
// milliseconds, so this is most of its cost. Once the app listens the
// connected socket becomes a net.Conn.
//
// mark, when not 0, is the socket's SO_MARK (AppDialer.SetMark).
func probe(network, addr string, mark int) (net.Conn, error) {
	var sa unix.Sockaddr
	family := unix.AF_UNIX
	switch network {
	case "unix":
		sa = &unix.SockaddrUnix{Name: addr}
	case "tcp4":
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, err
		}
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
		family = unix.AF_INET
	default:
		return nil, errors.New("probe: network " + network)
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if mark != 0 {
		setMark(fd, mark)
	}
	err = unix.Connect(fd, sa)
	if errors.Is(err, unix.EINPROGRESS) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		for {
			_, err = unix.Poll(pfd, probeWaitMs)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err == nil {
			var soErr int
			soErr, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if err == nil && soErr != 0 {
				err = unix.Errno(soErr)
			} else if err == nil && pfd[0].Revents&unix.POLLOUT == 0 {
				err = unix.ETIMEDOUT
			}
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", err)}
	}
	f := os.NewFile(uintptr(fd), addr)
	c, err := net.FileConn(f) // a dup, registered with Go's poller
	f.Close()
	return c, err
}

// setMark sets fd's SO_MARK. It needs CAP_NET_ADMIN; without it the
// connection goes unmarked, and the accounting takes it for the instance's
// activity, as before marks.
func setMark(fd, mark int) {
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, mark)
}
