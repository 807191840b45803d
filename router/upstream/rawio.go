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
	r.init()
	return r
}

func (r *RawIO) init() {
	if sc, ok := r.c.(syscall.Conn); ok && rawSyscalls {
		if rc, err := sc.SyscallConn(); err == nil {
			r.rc = rc
		}
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
	for {
		n, e := rawRead(fd, r.p)
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return false
		case e != 0:
			r.err = os.NewSyscallError("read", e)
		case n == 0:
			r.err = io.EOF
		default:
			r.n = n
		}
		return true
	}
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
	for r.n < len(r.p) {
		m, e := rawWrite(fd, r.p[r.n:])
		if m > 0 {
			r.n += m
		}
		switch {
		case e == syscall.EINTR:
		case e == syscall.EAGAIN:
			return false
		case e != 0:
			r.err = os.NewSyscallError("write", e)
			return true
		case m <= 0:
			r.err = io.ErrShortWrite
			return true
		}
	}
	return true
}
