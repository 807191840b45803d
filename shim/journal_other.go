//go:build !linux

package shim

import "golang.org/x/sys/unix"

// streamSocket is a blocking unix stream socket, close-on-exec. Off Linux
// there is no journald to connect to; this only keeps the package building.
func streamSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	return fd, err
}
