package upstream

import (
	"sync"
	"time"
)

// MaxIdle bounds the idle connections kept per instance, and
// IdleTimeout how long one is kept unused (the app may have closed
// it meanwhile; it would hold a descriptor for nothing).
const (
	MaxIdle     = 64
	IdleTimeout = 30 * time.Second
	// peerCheckAfter: a connection idle longer is checked for the app's
	// close before reuse (apps close idle keep-alive connections after
	// seconds, and a killed app's connections close at once: the first
	// request after a kill -9 must not be lost on one of them); one
	// reused at once under load costs no syscall.
	peerCheckAfter = time.Millisecond
)

// Pool holds an instance's idle connections, newest last (the
// newest is the likeliest to be still open and warm in the app).
type Pool struct {
	mu     sync.Mutex
	idle   []*Conn
	closed bool
}

// Get takes the newest idle connection that is still usable; nil if none.
func (p *Pool) Get() *Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if idle := time.Since(uc.idleSince); idle <= IdleTimeout {
			if idle > peerCheckAfter && peerClosed(uc.C) {
				// A TCP connection the app closed while idle would take
				// the request and lose it (no EPIPE as on a unix
				// socket); take a new one instead.
				go uc.C.Close()
				return nil
			}
			return uc
		}
		// The newest is stale: so are the others.
		stale := p.idle
		p.idle = nil
		go func() {
			uc.C.Close()
			for _, s := range stale {
				s.C.Close()
			}
		}()
	}
	return nil
}

// Put keeps uc for reuse (or closes it: the pool is closed or full).
func (p *Pool) Put(uc *Conn) {
	now := time.Now()
	uc.idleSince = now
	var stale []*Conn
	p.mu.Lock()
	if p.closed || len(p.idle) >= MaxIdle {
		p.mu.Unlock()
		uc.C.Close()
		return
	}
	// The oldest are first: drop those unused too long.
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleSince) > IdleTimeout {
		n++
	}
	if n > 0 {
		stale = append(stale, p.idle[:n]...)
		p.idle = append(p.idle[:0], p.idle[n:]...)
	}
	p.idle = append(p.idle, uc)
	p.mu.Unlock()
	for _, s := range stale {
		s.C.Close()
	}
}

// CloseIdle closes the idle connections; with forever, later ones too
// (the backend was removed or replaced).
func (p *Pool) CloseIdle(forever bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if forever {
		p.closed = true
	}
	p.mu.Unlock()
	for _, uc := range idle {
		uc.C.Close()
	}
}
