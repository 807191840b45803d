package router

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

// upConn is one connection to an instance's socket, kept open between
// requests (HTTP/1.1 keep-alive) in its backend's pool.
type upConn struct {
	c  net.Conn
	br *bufio.Reader
	rh respHead
	// idleSince is when it went back to the pool.
	idleSince time.Time
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
	return &upConn{c: c, br: bufio.NewReaderSize(c, 16<<10)}, nil
}

// closeIdle drops every idle connection to the instance (both pools: the
// fast path's and the http.Transport's of the fallback path and probes).
func (b *backend) closeIdle() {
	b.transport.CloseIdleConnections()
	b.pool.closeIdle(false)
}
