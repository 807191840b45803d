package upstream

import (
	"io"
	"net"
	"os"
	"syscall"
)

// RawIO reads and writes a socket with non-blocking system calls that do
// not pass through Go's scheduler hooks (entersyscall), while Go's poller
// still waits for readiness and applies the connection's deadlines.
//
// Why: between two requests on few connections every P of ten is idle,
// the runtime's monitor thread (sysmon) goes to sleep, and the next system
// call made the ordinary way wakes it with a futex, on the request's path:
// at one connection that was 12 % of ten's CPU (BENCHMARKS.md, section 2).
// A read or write of a non-blocking socket returns at once, so it needs
// none of what entersyscall provides (handing the P away while blocked).
//
// A connection without a descriptor (TLS, a wrapped conn) is read and
// written the ordinary way. Reads and writes behave as net.Conn's: io.EOF
// at the end, os.ErrDeadlineExceeded and net.ErrClosed as the poller
// reports them, other errors as *os.SyscallError.
type RawIO struct {
	c  net.Conn
	rc syscall.RawConn
	// The state of one call, kept here with the callbacks made once, so
	// that a call allocates nothing.
	p      []byte
	n      int
	err    error
	readF  func(uintptr) bool
	writeF func(uintptr) bool
}

// NewRawIO returns c's RawIO.
func NewRawIO(c net.Conn) *RawIO {
	r := &RawIO{c: c}
	r.init(rawConn(c))
	return r
}

// rawConn returns c's syscall.RawConn; nil when it has no descriptor.
func rawConn(c net.Conn) syscall.RawConn {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// init sets r up to read and write through rc (r.c's RawConn, nil when it
// has none).
func (r *RawIO) init(rc syscall.RawConn) {
	if rawSyscalls {
		r.rc = rc
	}
	r.readF = r.readStep
	r.writeF = r.writeStep
}

// Read reads into p as c.Read does.
func (r *RawIO) Read(p []byte) (int, error) {
	if r.rc == nil || len(p) == 0 {
		return r.c.Read(p)
	}
	r.p, r.n, r.err = p, 0, nil
	err := r.rc.Read(r.readF)
	n, rerr := r.n, r.err
	r.p, r.err = nil, nil
	if err != nil {
		return n, err
	}
	return n, rerr
}

func (r *RawIO) readStep(fd uintptr) bool {
	n, again, err := rawReadOnce(fd, r.p)
	if again {
		return false
	}
	r.n, r.err = n, err
	return true
}

// Write writes all of p as c.Write does.
func (r *RawIO) Write(p []byte) (int, error) {
	if r.rc == nil || len(p) == 0 {
		return r.c.Write(p)
	}
	r.p, r.n, r.err = p, 0, nil
	err := r.rc.Write(r.writeF)
	n, werr := r.n, r.err
	r.p, r.err = nil, nil
	if err != nil {
		return n, err
	}
	return n, werr
}

func (r *RawIO) writeStep(fd uintptr) bool {
	switch err := rawWriteAll(fd, r.p, &r.n); {
	case err == syscall.EAGAIN:
		return false
	case err == io.ErrShortWrite:
		r.err = err
	case err != nil:
		r.err = os.NewSyscallError("write", err)
	}
	return true
}

// rawReadOnce reads from the non-blocking fd into p (not empty): again when
// nothing is there yet (EAGAIN); otherwise what it read, io.EOF at the end,
// or the read's error as *os.SyscallError.
func rawReadOnce(fd uintptr, p []byte) (n int, again bool, err error) {
	for {
		m, e := rawRead(fd, p)
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return 0, true, nil
		case e != 0:
			return 0, false, os.NewSyscallError("read", e)
		case m == 0:
			return 0, false, io.EOF
		}
		return m, false, nil
	}
}

// rawWriteAll writes p[*n:] to the non-blocking fd, moving *n past what it
// wrote, until all of p is written (nil), the socket's buffer is full
// (syscall.EAGAIN) or the write fails (its syscall.Errno, or
// io.ErrShortWrite for a write of nothing).
func rawWriteAll(fd uintptr, p []byte, n *int) error {
	for *n < len(p) {
		m, e := rawWrite(fd, p[*n:])
		if m > 0 {
			*n += m
		}
		switch {
		case e == syscall.EINTR:
		case e != 0:
			return e
		case m <= 0:
			return io.ErrShortWrite
		}
	}
	return nil
}
