package shim

import "golang.org/x/sys/unix"

// streamSocket is a blocking unix stream socket, close-on-exec, in one call.
func streamSocket() (int, error) {
	return unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
}
