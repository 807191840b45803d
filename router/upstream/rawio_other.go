//go:build !linux || race

package upstream

import "syscall"

// rawRead is read(2) the ordinary way: off Linux, and in a race build,
// where syscall.Read's annotations tell the race detector that what was
// written to a socket happens before what is read from it (RawIO's calls
// are still made through the descriptor's raw callbacks, as in a normal
// build).
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	if e, ok := err.(syscall.Errno); ok {
		return 0, e
	}
	return n, 0
}

// rawWrite is write(2) the ordinary way (see rawRead).
func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	if e, ok := err.(syscall.Errno); ok {
		return 0, e
	}
	return n, 0
}
