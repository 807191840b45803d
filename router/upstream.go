package router

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tenhq/ten/router/http1"
)

// upConn is one connection to an instance's socket, kept open between
// requests (HTTP/1.1 keep-alive) in its backend's pool.
type upConn struct {
	c  net.Conn
	br *bufio.Reader
	rh http1.Response
	// idleSince is when it went back to the pool.
	idleSince time.Time
	// rc is c's raw descriptor, for writeRequest (nil: c has none).
	rc syscall.RawConn
	// pre and preErr are what writeRequest read of the answer with the
	// request's write; br's reads take them before reading c.
	pre    []byte
	preErr error
	// raw and rawStep (raw.step) carry writeRequest's state.
	raw     rawExchange
	rawStep func(uintptr) bool
}

// upSource is what an upConn's bufio.Reader reads from.
type upSource upConn

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
	return s.c.Read(p)
}

func newUpConn(c net.Conn) *upConn {
	uc := &upConn{c: c}
	if sc, ok := c.(syscall.Conn); ok {
		uc.rc, _ = sc.SyscallConn()
	}
	uc.br = bufio.NewReaderSize((*upSource)(uc), upReadBuf)
	uc.rawStep = uc.raw.step
	return uc
}

// upReadBuf is the size of an upstream connection's read buffer, which
// bounds the instance's response head.
const upReadBuf = http1.MaxResponseHead

// writeRequest writes req to the instance and waits for the first bytes
// of the answer in one step: the write happens inside the descriptor's
// raw read, after Go's poller has been armed for readability, so the read
// that follows waits for the answer instead of trying first and getting
// EAGAIN (one read syscall per request fewer; the answer cannot come
// before the request was written, so no readiness is missed). What it
// reads goes into buf and is served to uc.br's next read. n is how much
// of req was written; err a write error (a read error is the answer's).
// A write that does not complete at once (a full socket buffer) goes on
// as an ordinary write, followed by ordinary reads. (The client side
// cannot do the same with an answer and the next request: a client may
// send its next request before it has the answer, and readiness that
// came before the poller was armed would be lost.)
func (uc *upConn) writeRequest(req, buf []byte) (n int, err error) {
	if uc.rc == nil || len(buf) == 0 {
		return uc.c.Write(req)
	}
	uc.raw = rawExchange{req: req, buf: buf}
	err = uc.rc.Read(uc.rawStep)
	w := uc.raw
	uc.raw = rawExchange{} // holds no buffer between requests
	n = w.n
	switch {
	case w.werr == syscall.EAGAIN:
		m, err := uc.c.Write(req[n:])
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

// rawExchange is the state of one writeRequest, kept in its upConn (with
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
		for w.n < len(w.req) {
			m, e := syscall.Write(int(fd), w.req[w.n:])
			if m > 0 {
				w.n += m
			}
			switch {
			case e == syscall.EINTR:
			case e != nil:
				w.werr = e
				return true
			case m <= 0:
				w.werr = io.ErrShortWrite
				return true
			}
		}
		return false // wait for the answer
	}
	m, e := syscall.Read(int(fd), w.buf)
	if e == syscall.EAGAIN || e == syscall.EINTR {
		return false
	}
	w.read = true
	if e != nil {
		w.rerr = os.NewSyscallError("read", e)
	} else if m == 0 {
		w.rerr = io.EOF
	} else {
		w.nr = m
	}
	return true
}

// maxIdleUpstream bounds the idle connections kept per instance, and
// upstreamIdleTimeout how long one is kept unused (the app may have closed
// it meanwhile; it would hold a descriptor for nothing).
const (
	maxIdleUpstream     = 64
	upstreamIdleTimeout = 30 * time.Second
	// peerCheckAfter: a connection idle longer is checked for the app's
	// close before reuse (apps close idle keep-alive connections after
	// seconds, and a killed app's connections close at once: the first
	// request after a kill -9 must not be lost on one of them); one
	// reused at once under load costs no syscall.
	peerCheckAfter = time.Millisecond
)

// upstreamPool holds an instance's idle connections, newest last (the
// newest is the likeliest to be still open and warm in the app).
type upstreamPool struct {
	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

func (p *upstreamPool) get() *upConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if idle := time.Since(uc.idleSince); idle <= upstreamIdleTimeout {
			if idle > peerCheckAfter && peerClosed(uc.c) {
				// A TCP connection the app closed while idle would take
				// the request and lose it (no EPIPE as on a unix
				// socket); take a new one instead.
				go uc.c.Close()
				return nil
			}
			return uc
		}
		// The newest is stale: so are the others.
		stale := p.idle
		p.idle = nil
		go func() {
			uc.c.Close()
			for _, s := range stale {
				s.c.Close()
			}
		}()
	}
	return nil
}

func (p *upstreamPool) put(uc *upConn) {
	now := time.Now()
	uc.idleSince = now
	var stale []*upConn
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdleUpstream {
		p.mu.Unlock()
		uc.c.Close()
		return
	}
	// The oldest are first: drop those unused too long.
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleSince) > upstreamIdleTimeout {
		n++
	}
	if n > 0 {
		stale = append(stale, p.idle[:n]...)
		p.idle = append(p.idle[:0], p.idle[n:]...)
	}
	p.idle = append(p.idle, uc)
	p.mu.Unlock()
	for _, s := range stale {
		s.c.Close()
	}
}

// closeIdle closes the idle connections; with forever, later ones too
// (the backend was removed or replaced).
func (p *upstreamPool) closeIdle(forever bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if forever {
		p.closed = true
	}
	p.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

// dialTimeout bounds connecting to an instance's socket: systemd holds it,
// so connect returns at once (the connection waits in the backlog); a
// longer wait means the socket is gone or its backlog is full.
const dialTimeout = 5 * time.Second

func (b *backend) dial() (*upConn, error) {
	// A directly run app that does not listen (it restarts) is woken and
	// waited for up to its startup_timeout.
	d := dialTimeout
	if b.StartupTimeout > d {
		d = b.StartupTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c, err := b.dialUp(ctx, "", "")
	if err != nil {
		return nil, err
	}
	return newUpConn(c), nil
}

// closeIdle drops every idle connection to the instance (both pools: the
// fast path's and the http.Transport's of the fallback path and probes).
func (b *backend) closeIdle() {
	b.transport.CloseIdleConnections()
	b.pool.closeIdle(false)
}
