package upstream

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/tenhq/ten/router/http1"
)

// Conn is one connection to an instance's socket, kept open between
// requests (HTTP/1.1 keep-alive) in its backend's pool.
type Conn struct {
	// C is the connection.
	C net.Conn
	// BR reads from C (after what WriteRequest read).
	BR *bufio.Reader
	// Head is the last response head read from BR (http1.ReadResponse).
	Head http1.Response
	// idleSince is when it went back to the pool.
	idleSince time.Time
	// rc is c's raw descriptor, for WriteRequest (nil: c has none).
	rc syscall.RawConn
	// pre and preErr are what WriteRequest read of the answer with the
	// request's write; br's reads take them before reading c.
	pre    []byte
	preErr error
	// raw and rawStep (raw.step) carry WriteRequest's state.
	raw     rawExchange
	rawStep func(uintptr) bool
	// rio reads C for BR (see RawIO).
	rio RawIO
	// stallEvery and clientHere are StreamBody's.
	stallEvery time.Duration
	clientHere func() bool
}

// ErrClientGone: an answer stalled, and the client waiting for it had gone.
var ErrClientGone = errors.New("the answer stalled and its client has gone")

// StreamBody is for reading an answer's body, which streams without a
// deadline for as long as its client waits: a read that finds nothing for
// every (0: no check) asks here whether the client is still there, and
// fails with ErrClientGone once it is not. A hostile or stuck app then
// cannot keep the router's connections (and a front proxy's per-address
// slots) after the clients left. EndBody ends it.
func (uc *Conn) StreamBody(every time.Duration, here func() bool) {
	if every <= 0 || here == nil {
		uc.C.SetReadDeadline(time.Time{})
		return
	}
	uc.stallEvery, uc.clientHere = every, here
	uc.C.SetReadDeadline(time.Now().Add(every))
}

// EndBody ends StreamBody's checks, once the body has been read.
func (uc *Conn) EndBody() { uc.stallEvery, uc.clientHere = 0, nil }

// upSource is what a Conn's bufio.Reader reads from.
type upSource Conn

func (s *upSource) Read(p []byte) (int, error) {
	if len(s.pre) > 0 {
		n := copy(p, s.pre)
		s.pre = s.pre[n:]
		return n, nil
	}
	if err := s.preErr; err != nil {
		s.preErr = nil
		return 0, err
	}
	for {
		n, err := s.rio.Read(p)
		if n > 0 || s.stallEvery <= 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		// Nothing for stallEvery: go on only for a client that waits.
		if !s.clientHere() {
			return 0, ErrClientGone
		}
		s.C.SetReadDeadline(time.Now().Add(s.stallEvery))
	}
}

// NewConn wraps a new connection to an instance.
func NewConn(c net.Conn) *Conn {
	uc := &Conn{C: c}
	uc.rc = rawConn(c)
	uc.rio.c = c
	uc.rio.init(uc.rc)
	uc.BR = bufio.NewReaderSize((*upSource)(uc), ReadBufSize)
	uc.rawStep = uc.raw.step
	return uc
}

// ReadBufSize is the size of an upstream connection's read buffer, which
// bounds the instance's response head.
const ReadBufSize = http1.MaxResponseHead

// WriteRequest writes req to the instance and waits for the first bytes
// of the answer in one step: the write happens inside the descriptor's
// raw read, after Go's poller has been armed for readability, so the read
// that follows waits for the answer instead of trying first and getting
// EAGAIN (one read syscall per request fewer; the answer cannot come
// before the request was written, so no readiness is missed). What it
// reads goes into buf and is served to uc.BR's next read. n is how much
// of req was written; err a write error (a read error is the answer's).
// A write that does not complete at once (a full socket buffer) goes on
// as an ordinary write, followed by ordinary reads. (The client side
// cannot do the same with an answer and the next request: a client may
// send its next request before it has the answer, and readiness that
// came before the poller was armed would be lost.)
func (uc *Conn) WriteRequest(req, buf []byte) (n int, err error) {
	if uc.rc == nil || len(buf) == 0 {
		return uc.C.Write(req)
	}
	uc.raw = rawExchange{req: req, buf: buf}
	err = uc.rc.Read(uc.rawStep)
	w := uc.raw
	uc.raw = rawExchange{} // holds no buffer between requests
	n = w.n
	switch {
	case w.werr == syscall.EAGAIN:
		m, err := uc.C.Write(req[n:])
		return n + m, err
	case w.werr != nil:
		return n, os.NewSyscallError("write", w.werr)
	case !w.wrote || n < len(req):
		// The raw read failed before the write (closed, deadline).
		if err == nil {
			err = io.ErrShortWrite
		}
		return n, err
	case err != nil:
		uc.preErr = err // the deadline or a close while waiting
	case w.read:
		uc.pre, uc.preErr = buf[:w.nr], w.rerr
	}
	return n, nil
}

// rawExchange is the state of one WriteRequest, kept in its Conn (with
// the step function made once) so that a request allocates nothing.
type rawExchange struct {
	req, buf    []byte
	n, nr       int
	wrote, read bool
	werr, rerr  error
}

// step is called by the raw read: first to write the request (false: now
// wait for the answer), then, once readable, to read it.
func (w *rawExchange) step(fd uintptr) bool {
	if !w.wrote {
		w.wrote = true
		if w.werr = rawWriteAll(fd, w.req, &w.n); w.werr != nil {
			return true
		}
		return false // wait for the answer
	}
	n, again, err := rawReadOnce(fd, w.buf)
	if again {
		return false
	}
	w.read, w.nr, w.rerr = true, n, err
	return true
}
